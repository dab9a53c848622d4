// Counts the words on stdin, most frequent first.
#include <algorithm>
#include <iostream>
#include <map>
#include <string>
#include <vector>

int main() {
	std::map<std::string, int> count;
	for (std::string w; std::cin >> w;) count[w]++;
	std::vector<std::pair<std::string, int>> v(count.begin(), count.end());
	std::sort(v.begin(), v.end(), [](auto &a, auto &b) { return a.second > b.second || (a.second == b.second && a.first < b.first); });
	std::cout << "C++ (" << __cplusplus << "): ";
	for (auto &[w, n] : v) std::cout << w << "=" << n << " ";
	std::cout << "\n";
}
