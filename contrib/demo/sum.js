// Sums the numbers on stdin.
let data = "";
process.stdin.on("data", (chunk) => (data += chunk));
process.stdin.on("end", () => {
  const nums = data.split(/\s+/).filter(Boolean).map(Number);
  console.log(`node ${process.version}: ${nums.length} numbers, sum ${nums.reduce((a, b) => a + b, 0)}`);
});
