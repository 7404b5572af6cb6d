# Shared shell helpers for the scripts in this folder (source it; it runs nothing).

# wait_line FILE PATTERN: waits (up to 120 s; seeding PostgreSQL on a busy machine is slow) until a
# line of FILE matches PATTERN and prints the first such line; otherwise prints FILE and fails.
wait_line() {
  for _ in $(seq 1 1200); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -m1 "$2" "$1"; return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}
