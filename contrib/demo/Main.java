import java.util.Scanner;

// Reads numbers on stdin and prints their mean (Stats.java), with the JVM's version.
public class Main {
    public static void main(String[] args) {
        Scanner in = new Scanner(System.in);
        long sum = 0;
        int n = 0;
        while (in.hasNextLong()) {
            sum += in.nextLong();
            n++;
        }
        System.out.printf("Java %s: mean of %d numbers is %.2f%n", Runtime.version().feature(), n, Stats.mean(sum, n));
    }
}
