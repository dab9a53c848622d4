// A second file of the Java program: javac finds it next to Main.java.
final class Stats {
    static double mean(long sum, int n) {
        return n == 0 ? 0.0 : (double) sum / n;
    }
}
