# Runs inside a fresh sandbox: look around and show what is fenced off.
echo "hello $1: I am $(id -un) (uid $(id -u)) on host '$(hostname)', working in $(pwd)"
echo "capabilities: $(grep CapEff /proc/self/status | tr -s '\t' ' ')"
echo "seccomp mode: $(grep '^Seccomp:' /proc/self/status | cut -f2) (2 = filtering)"
echo "network interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
touch /etc/x 2>/dev/null && echo "wrote to /etc (unexpected!)" || echo "the root file system is read-only"
echo "scratch space" > /tmp/note && echo "/tmp is writable: $(cat /tmp/note)"
