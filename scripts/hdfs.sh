#!/usr/bin/env bash
# A real single-machine HDFS (Hadoop 2.7.3 NameNode + DataNodes) for development, tests and CI.
#
# Maven Central is not reachable from our machines, but PyPI's pyspark==2.4.8 source distribution
# ships the Hadoop 2.7.3 jars, NameNode and DataNode included, and they run on Java 17. So `fetch`
# takes the jars from there and keeps them in a cache outside the repository.
#
#   scripts/hdfs.sh fetch                     download the jars once (idempotent)
#   scripts/hdfs.sh start [--datanodes N]     format, start NameNode + N DataNodes, print the URL
#   scripts/hdfs.sh stop                      stop every daemon of this state dir
#   scripts/hdfs.sh status                    which daemons run, and the URL
#   scripts/hdfs.sh url                       print the hdfs:// URL of the running cluster
#   scripts/hdfs.sh stop-namenode | start-namenode
#   scripts/hdfs.sh kill-datanode I           SIGKILL DataNode I (1-based)
#   scripts/hdfs.sh fs ARGS...                Hadoop's FsShell (-ls, -put, -get, ...)
#
# Environment:
#   SPINDLE_HADOOP_HOME  jar cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/spindle/hadoop-2.7.3)
#   SPINDLE_HDFS_DIR     state dir: config, metadata, blocks, logs, pids (default /tmp/spindle-hdfs)
#   SPINDLE_HDFS_PORT    NameNode RPC port for `start` (default: a free port)
#   SPINDLE_HDFS_REPLICATION  dfs.replication (default: min(N, 3))
set -euo pipefail

HADOOP_HOME=${SPINDLE_HADOOP_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/spindle/hadoop-2.7.3}
STATE=${SPINDLE_HDFS_DIR:-/tmp/spindle-hdfs}
JARS=$HADOOP_HOME/jars
# Small heaps and a fast-starting JIT: three engineers and the tests share two cores.
JAVA_OPTS=(-Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true)

die() { echo "hdfs.sh: $*" >&2; exit 1; }

fetch() {
    if [ -f "$JARS/hadoop-hdfs-2.7.3.jar" ]; then
        echo "$JARS"
        return
    fi
    command -v java >/dev/null || die "java not found: install a JRE (Java 8-17), e.g. apt-get install openjdk-17-jre-headless"
    local python=${PYTHON:-python3}
    local tmp
    tmp=$(mktemp -d)
    # The sdist's setup.py needs wheel even for `pip download` without build isolation.
    "$python" -m pip install --quiet wheel >&2
    echo "hdfs.sh: downloading pyspark==2.4.8 (about 220 MB) for its Hadoop 2.7.3 jars" >&2
    "$python" -m pip download --quiet --no-deps --no-binary :all: --no-build-isolation \
        pyspark==2.4.8 -d "$tmp" >&2
    tar -xzf "$tmp"/pyspark-2.4.8.tar.gz -C "$tmp" pyspark-2.4.8/deps/jars
    mkdir -p "$HADOOP_HOME"
    rm -rf "$HADOOP_HOME/jars.partial"
    mv "$tmp/pyspark-2.4.8/deps/jars" "$HADOOP_HOME/jars.partial"
    # Rename last, so an interrupted fetch is never mistaken for a complete one.
    mv "$HADOOP_HOME/jars.partial" "$JARS"
    rm -rf "$tmp"
    [ -f "$JARS/hadoop-hdfs-2.7.3.jar" ] || die "pyspark-2.4.8/deps/jars has no hadoop-hdfs-2.7.3.jar"
    echo "$JARS"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# site_xml FILE NAME=VALUE... writes a Hadoop configuration file.
site_xml() {
    local file=$1
    shift
    {
        echo '<?xml version="1.0"?>'
        echo '<configuration>'
        local kv
        for kv in "$@"; do
            echo "  <property><name>${kv%%=*}</name><value>${kv#*=}</value></property>"
        done
        echo '</configuration>'
    } >"$file"
}

# conf_dir DIR DATA_DIR writes a configuration directory. DataNodes get one each, because each
# needs its own data directory; their ports are ephemeral (127.0.0.1:0), as in MiniDFSCluster.
conf_dir() {
    local dir=$1 data=$2 port replication
    port=$(cat "$STATE/port")
    replication=$(cat "$STATE/replication")
    # The embedded HTTP servers look these folders up on the classpath and fail without them.
    mkdir -p "$dir/webapps/hdfs/WEB-INF" "$dir/webapps/datanode/WEB-INF" "$dir/webapps/static"
    site_xml "$dir/core-site.xml" \
        "fs.defaultFS=hdfs://127.0.0.1:$port" \
        "hadoop.tmp.dir=$STATE/tmp" \
        "ipc.client.connect.max.retries=2" \
        "ipc.client.connect.retry.interval=500"
    # WebHDFS would need Jersey 1, which Spark does not ship; safe mode ends as soon as the blocks
    # are reported (no 30 s extension), so a restarted NameNode is writable quickly.
    site_xml "$dir/hdfs-site.xml" \
        "dfs.replication=$replication" \
        "dfs.namenode.name.dir=$STATE/name" \
        "dfs.datanode.data.dir=$data" \
        "dfs.namenode.rpc-address=127.0.0.1:$port" \
        "dfs.namenode.http-address=127.0.0.1:0" \
        "dfs.namenode.secondary.http-address=127.0.0.1:0" \
        "dfs.datanode.address=127.0.0.1:0" \
        "dfs.datanode.http.address=127.0.0.1:0" \
        "dfs.datanode.ipc.address=127.0.0.1:0" \
        "dfs.datanode.hostname=127.0.0.1" \
        "dfs.permissions.enabled=false" \
        "dfs.webhdfs.enabled=false" \
        "dfs.namenode.safemode.extension=0" \
        "dfs.namenode.safemode.min.datanodes=0" \
        "dfs.heartbeat.interval=1" \
        "dfs.namenode.heartbeat.recheck-interval=5000" \
        "dfs.client.block.write.replace-datanode-on-failure.enable=false"
    cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
EOF
}

java_class() {
    local conf=$1 class=$2
    shift 2
    java "${JAVA_OPTS[@]}" -cp "$conf:$JARS/*" "$class" "$@"
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_namenode() {
    if alive "$STATE/namenode.pid"; then
        return
    fi
    local log=$STATE/logs/namenode.log
    echo "=== start $(date -Is)" >>"$log"
    nohup java "${JAVA_OPTS[@]}" -cp "$STATE/conf:$JARS/*" \
        org.apache.hadoop.hdfs.server.namenode.NameNode >>"$log" 2>&1 &
    echo $! >"$STATE/namenode.pid"
    local port i
    port=$(cat "$STATE/port")
    for i in $(seq 1 600); do
        alive "$STATE/namenode.pid" || die "NameNode exited; see $log"
        if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    die "NameNode did not listen on 127.0.0.1:$port within 60 s; see $log"
}

start_datanode() {
    local i=$1
    local dir=$STATE/dn$i
    if alive "$dir/pid"; then
        return
    fi
    mkdir -p "$dir/data"
    conf_dir "$dir/conf" "$dir/data"
    nohup java "${JAVA_OPTS[@]}" -cp "$dir/conf:$JARS/*" \
        org.apache.hadoop.hdfs.server.datanode.DataNode >>"$STATE/logs/datanode$i.log" 2>&1 &
    echo $! >"$dir/pid"
}

# Registered DataNodes, counted from the NameNode log since its latest start.
registered() {
    awk '/^=== start/ { n = 0 } /registerDatanode: from/ { n++ } END { print n + 0 }' \
        "$STATE/logs/namenode.log"
}

wait_datanodes() {
    local want=$1 i
    for i in $(seq 1 900); do
        if [ "$(registered)" -ge "$want" ]; then
            return
        fi
        sleep 0.1
    done
    die "only $(registered) of $want DataNodes registered within 90 s; see $STATE/logs/"
}

datanode_count() { cat "$STATE/datanodes" 2>/dev/null || echo 0; }

start() {
    local datanodes=1
    while [ $# -gt 0 ]; do
        case $1 in
            --datanodes) datanodes=${2:?--datanodes needs a number}; shift 2 ;;
            *) die "start: unknown argument '$1' (expected --datanodes N)" ;;
        esac
    done
    fetch >/dev/null
    if alive "$STATE/namenode.pid"; then
        die "a NameNode already runs for $STATE (pid $(cat "$STATE/namenode.pid")); run '$0 stop' first or set SPINDLE_HDFS_DIR"
    fi
    stop_all quiet
    rm -rf "$STATE"
    mkdir -p "$STATE/logs"
    echo "${SPINDLE_HDFS_PORT:-$(free_port)}" >"$STATE/port"
    local replication=$((datanodes < 3 ? datanodes : 3))
    echo "${SPINDLE_HDFS_REPLICATION:-$replication}" >"$STATE/replication"
    echo "$datanodes" >"$STATE/datanodes"
    conf_dir "$STATE/conf" "$STATE/dn-unused"
    java_class "$STATE/conf" org.apache.hadoop.hdfs.server.namenode.NameNode -format -nonInteractive \
        >"$STATE/logs/format.log" 2>&1 || die "NameNode -format failed; see $STATE/logs/format.log"
    start_namenode
    local i
    for i in $(seq 1 "$datanodes"); do
        start_datanode "$i"
    done
    wait_datanodes "$datanodes"
    url
}

stop_pid() {
    local pidfile=$1 pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

stop_all() {
    [ -d "$STATE" ] || return 0
    local i
    for i in $(seq 1 "$(datanode_count)"); do
        stop_pid "$STATE/dn$i/pid"
    done
    stop_pid "$STATE/namenode.pid"
    [ "${1:-}" = quiet ] || echo "stopped HDFS in $STATE"
}

url() {
    [ -f "$STATE/port" ] || die "no cluster in $STATE; run '$0 start' first"
    echo "hdfs://127.0.0.1:$(cat "$STATE/port")"
}

status() {
    [ -f "$STATE/port" ] || { echo "no cluster in $STATE"; return 1; }
    local up=0 i
    if alive "$STATE/namenode.pid"; then
        echo "namenode: running (pid $(cat "$STATE/namenode.pid")) at $(url)"
        up=1
    else
        echo "namenode: stopped ($(url))"
    fi
    for i in $(seq 1 "$(datanode_count)"); do
        if alive "$STATE/dn$i/pid"; then
            echo "datanode $i: running (pid $(cat "$STATE/dn$i/pid"))"
        else
            echo "datanode $i: stopped"
        fi
    done
    [ "$up" = 1 ]
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
    fetch) fetch ;;
    start) start "$@" ;;
    stop) stop_all ;;
    status) status ;;
    url) url ;;
    stop-namenode) stop_pid "$STATE/namenode.pid" ;;
    start-namenode)
        start_namenode
        # A restarted NameNode takes writes only once the DataNodes have re-registered.
        wait_datanodes "$(for i in $(seq 1 "$(datanode_count)"); do alive "$STATE/dn$i/pid" && echo; done | wc -l)"
        # ... and have reported their blocks (safe mode off).
        java_class "$STATE/conf" org.apache.hadoop.hdfs.tools.DFSAdmin -safemode wait >/dev/null 2>>"$STATE/logs/namenode.log"
        ;;
    kill-datanode)
        i=${1:?kill-datanode needs a DataNode number (1-based)}
        [ -f "$STATE/dn$i/pid" ] || die "no DataNode $i in $STATE"
        kill -9 "$(cat "$STATE/dn$i/pid")" 2>/dev/null || true
        rm -f "$STATE/dn$i/pid"
        ;;
    fs) java_class "$STATE/conf" org.apache.hadoop.fs.FsShell "$@" ;;
    *)
        sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 64
        ;;
esac
