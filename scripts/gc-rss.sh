#!/usr/bin/env bash
# Peak memory of one garbage collection run over many blobs.
#
# Seeds a fresh data directory with BLOBS stored blobs, each with its
# `blobs` row and a link from one of REPOS repositories; half of each
# repository's blobs are referenced by its one (tagged) manifest, the other
# half by nothing. Everything is dated two days back, so the default grace
# period does not hold it. Then it starts `berth serve` on that directory,
# runs one GC through the API (`POST /api/v1/gc`), and prints the server's
# peak RSS (VmHWM) at idle and after the run, the run's duration and its
# counts (expected: BLOBS/2 links and BLOBS/2 blobs removed).
#
# Usage: scripts/gc-rss.sh [BERTH_BINARY]
#   BERTH_BINARY  default target/debug/berth (build it first:
#                 cargo build -p berth; for the release figure:
#                 cargo build --release -p berth && scripts/gc-rss.sh target/release/berth)
# Environment: BLOBS (default 100000), REPOS (default 100),
#              WORK (default: a new temporary directory, removed at the end
#              unless KEEP=1).
# Needs python3 (with its sqlite3 module) and curl.

set -euo pipefail

BERTH=${1:-target/debug/berth}
BLOBS=${BLOBS:-100000}
REPOS=${REPOS:-100}
WORK=${WORK:-$(mktemp -d -t berth-gc-rss.XXXXXX)}
DATA=$WORK/data
PID=

[ -x "$BERTH" ] || { echo "no berth binary at $BERTH (cargo build -p berth)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl is needed" >&2; exit 1; }

cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

# Starts berth on $DATA (open, no scheduled GC); sets PID and ADDR.
start() {
    rm -f "$WORK/addr"
    "$BERTH" serve --listen 127.0.0.1:0 --addr-file "$WORK/addr" --data-dir "$DATA" \
        --auth none --gc-interval 0 --log-level "${LOG_LEVEL:-warn}" 2>>"$WORK/berth.log" &
    PID=$!
    for _ in $(seq 1 200); do
        [ -s "$WORK/addr" ] && break
        sleep 0.1
    done
    [ -s "$WORK/addr" ] || { echo "berth did not start:" >&2; cat "$WORK/berth.log" >&2; exit 1; }
    ADDR=$(cat "$WORK/addr")
}

stop() {
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
}

hwm() { awk '/^VmHWM/ {print $2}' "/proc/$PID/status"; }

mkdir -p "$DATA"
echo "work dir: $WORK"
# A first start creates the schema.
start
stop

echo "seeding $BLOBS blobs in $REPOS repositories..."
seed_start=$(date +%s)
python3 - "$DATA" "$BLOBS" "$REPOS" <<'EOF'
import hashlib, json, os, sqlite3, sys, time

data, blobs, repos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
then_ms = int((time.time() - 2 * 86400) * 1000)
then_s = then_ms / 1000
db = sqlite3.connect(os.path.join(data, "berth.db"))
db.execute("PRAGMA synchronous = OFF")
per_repo = blobs // repos
made_dirs = set()
for r in range(repos):
    name = f"gc/repo{r:04d}"
    rid = db.execute(
        "INSERT INTO repositories (name, created_at) VALUES (?, ?) RETURNING id",
        (name, then_ms),
    ).fetchone()[0]
    layers = []
    for i in range(per_repo):
        body = f"blob {r} {i}\n".encode()
        hexd = hashlib.sha256(body).hexdigest()
        digest = "sha256:" + hexd
        d = os.path.join(data, "blobs", "sha256", hexd[:2])
        if d not in made_dirs:
            os.makedirs(d, exist_ok=True)
            made_dirs.add(d)
        path = os.path.join(d, hexd)
        with open(path, "wb") as f:
            f.write(body)
        os.utime(path, (then_s, then_s))
        db.execute("INSERT INTO blobs (digest, size, created_at) VALUES (?, ?, ?)",
                   (digest, len(body), then_ms))
        db.execute("INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (?, ?, ?)",
                   (rid, digest, then_ms))
        if i % 2 == 0:
            layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                           "digest": digest, "size": len(body)})
    config = layers[0]
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config["digest"], "size": config["size"]},
        "layers": layers,
    }).encode()
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    db.execute(
        "INSERT INTO manifests (repository_id, digest, media_type, size, content, pushed_at)"
        " VALUES (?, ?, 'application/vnd.oci.image.manifest.v1+json', ?, ?, ?)",
        (rid, mdigest, len(manifest), manifest, then_ms),
    )
    db.executemany(
        "INSERT INTO manifest_references (repository_id, parent, child, kind) VALUES (?, ?, ?, 'blob')",
        [(rid, mdigest, l["digest"]) for l in layers],
    )
    db.execute("INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, 'latest', ?, ?)",
               (rid, mdigest, then_ms))
db.commit()
EOF
echo "seeded in $(( $(date +%s) - seed_start )) s"

start
sleep 1
idle=$(hwm)
run_start=$(date +%s.%N)
report=$(curl -sS --fail-with-body -X POST -H 'content-type: application/json' \
    -d '{"dry_run": false}' "http://$ADDR/api/v1/gc")
run_end=$(date +%s.%N)
peak=$(hwm)
stop

printf '%s' "$report" > "$WORK/report.json"
counts=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(json.dumps(r["counts"]), r["reclaimed_bytes"], "bytes reclaimed, kept_recent", r["kept_recent"], "interrupted", r["interrupted"], ";", len(r["links"]), "links and", len(r["blobs"]), "blobs listed")' "$WORK/report.json")
echo "binary:        $BERTH"
echo "blobs:         $BLOBS in $REPOS repositories, half unreferenced"
echo "gc counts:     $counts"
echo "gc duration:   $(python3 -c "print(f'{$run_end - $run_start:.1f} s')")"
echo "VmHWM idle:    $((idle / 1024)) MiB ($idle kB)"
echo "VmHWM peak:    $((peak / 1024)) MiB ($peak kB)"
