#include <stdio.h>

int main(void) {
	printf("this never runs\n")
	return 0;
}
