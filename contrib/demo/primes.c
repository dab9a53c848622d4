/* Counts the primes below the number on stdin. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
	int n;
	if (scanf("%d", &n) != 1 || n < 2) {
		fprintf(stderr, "give a number above 1\n");
		return 2;
	}
	char *composite = calloc(n, 1);
	int count = 0;
	for (int i = 2; i < n; i++) {
		if (composite[i]) continue;
		count++;
		for (long j = (long)i * i; j < n; j += i) composite[j] = 1;
	}
	printf("C: %d primes below %d\n", count, n);
	return 0;
}
