#!/usr/bin/env bash
# A real single-machine Hadoop 3 cluster (HDFS + YARN with node labels and the YARN Services API)
# for development, tests and CI. Every daemon is its own JVM, as on a real cluster:
#
#   ZooKeeper (the YARN service registry), NameNode, one DataNode, ResourceManager (CapacityScheduler,
#   exclusive node labels CPU and GPU, queues default, CPU_Q, GPU_Q, the YARN Services REST API),
#   NodeManager 1 on 127.0.0.2 (label CPU), NodeManager 2 on 127.0.0.3 (label GPU) and
#   NodeManager 3 on 127.0.0.4 (label CPU): the CPU partition has two nodes, so two replicas of
#   one service can run under anti-affinity.
#
# The jars come from Maven Central through tests/hadoop/pom.xml (mvn dependency:copy-dependencies)
# and are kept in a cache outside the repository.
#
#   scripts/hadoop.sh fetch                 download the jars once (idempotent)
#   scripts/hadoop.sh start                 start everything; prints, on stdout, the eval-able lines
#                                           SPINDLE_HDFS_URL=hdfs://127.0.0.1:PORT
#                                           SPINDLE_YARN_RM=http://127.0.0.1:PORT
#   scripts/hadoop.sh start --kerberos      the same cluster secured with Kerberos (see "Kerberos" below);
#                                           prints also KRB5_CONFIG, HADOOP_CONF_DIR, SPINDLE_KEYTAB
#                                           and SPINDLE_PRINCIPAL (the user's keytab and principal)
#                                           SPINDLE_HADOOP3_DIR=STATE (the state dir, for the verbs below)
#   scripts/hadoop.sh env                   print those lines again
#   scripts/hadoop.sh stop                  stop every daemon (and container) of this state dir
#   scripts/hadoop.sh status                which daemons run, and the addresses
#   scripts/hadoop.sh kill-datanode         SIGKILL the DataNode
#   scripts/hadoop.sh start-datanode        start it again (waits until it has registered)
#   scripts/hadoop.sh restart-datanode      kill-datanode + start-datanode
#   scripts/hadoop.sh stop-namenode | start-namenode | restart-namenode
#                                           start waits until the NameNode has left safe mode
#   scripts/hadoop.sh kill-nodemanager N    SIGKILL NodeManager N (1 = CPU, 2 = GPU, 3 = CPU) and its containers
#   scripts/hadoop.sh stop-nodemanager N    stop NodeManager N gracefully (it stops its containers)
#   scripts/hadoop.sh start-nodemanager N   start it again (waits until RUNNING with its label)
#   scripts/hadoop.sh yarn ARGS...          rmadmin | app | application | applicationattempt |
#                                           container | node | queue | cluster | logs | version
#   scripts/hadoop.sh fs ARGS...            Hadoop's FsShell (-ls, -put, -cat, ...)
#   scripts/hadoop.sh dfsadmin ARGS...      Hadoop's DFSAdmin (-report, -safemode get, ...)
#
# Environment:
#   SPINDLE_HADOOP3_HOME  jar cache (default ${XDG_CACHE_HOME:-$HOME/.cache}/spindle/hadoop-3.4.2)
#   SPINDLE_HADOOP_DIR    state dir: config, metadata, blocks, NodeManager dirs, logs, pids
#                         (default /tmp/spindle-hadoop); kept after `stop` for the logs
#   SPINDLE_HADOOP_USER   user.name for the readiness checks (default $USER, else `id -un`)
#   JAVA                  the java binary (default: java on PATH; Java 17 tested)
#
# Kerberos (start --kerberos): a KDC (Hadoop's MiniKdc, i.e. Apache Kerby, from
# tests/hadoop/kdc/pom.xml) on 127.0.0.1, realm EXAMPLE.COM; one keytab for the daemons
# (hdfs/, yarn/ and HTTP/ for localhost, 127.0.0.1-3 and the host name) and one for the user
# ($SPINDLE_HADOOP_USER@EXAMPLE.COM, and $SPINDLE_HADOOP_USER/localhost@EXAMPLE.COM: YARN
# Services wants a service's own principal in the NAME/HOST form). RPC needs Kerberos, block
# access tokens are on, the DataNode speaks SASL on its data port
# (dfs.data.transfer.protection=authentication), and the ResourceManager's and NodeManagers'
# web APIs need SPNEGO. The script's own CLIs and curl
# use a ticket cache kinit fills from the user's keytab: MIT's kinit/klist (Debian: krb5-user).
#   SPINDLE_KRB_TICKET_SECONDS  the KDC's longest ticket lifetime (default 86400)
set -euo pipefail

HADOOP_VERSION=3.4.2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HADOOP_HOME=${SPINDLE_HADOOP3_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/spindle/hadoop-$HADOOP_VERSION}
JARS=$HADOOP_HOME/jars
STATE=${SPINDLE_HADOOP_DIR:-/tmp/spindle-hadoop}
HUSER=${SPINDLE_HADOOP_USER:-${USER:-$(id -un)}}
JAVA=${JAVA:-java}
# NodeManager N listens on NM_IPS[N-1] and carries label NM_LABELS[N-1].
NM_IPS=(127.0.0.2 127.0.0.3 127.0.0.4)
NM_LABELS=(CPU GPU CPU)
REALM=EXAMPLE.COM
KRB=$STATE/krb
# A cluster started with --kerberos leaves its krb5.conf; every later verb (env, restart-*, fs)
# then speaks Kerberos too. `start` decides afresh from its own arguments.
KERBEROS=0
[ -f "$KRB/krb5.conf" ] && KERBEROS=1

# Java 17: Hadoop 3.4's own launcher (hadoop-functions.sh, hadoop_finalize_jpms_opts, HADOOP-19310)
# adds exactly these; without java.lang, Guice/cglib in the ResourceManager and NodeManager fail.
JPMS_OPTS=(
    -XX:+IgnoreUnrecognizedVMOptions
    --add-opens=java.base/java.io=ALL-UNNAMED
    --add-opens=java.base/java.lang=ALL-UNNAMED
    --add-opens=java.base/java.math=ALL-UNNAMED
    --add-opens=java.base/java.util=ALL-UNNAMED
    --add-opens=java.base/java.util.zip=ALL-UNNAMED
    --add-opens=java.base/sun.security.util=ALL-UNNAMED
    --add-opens=java.base/sun.security.x509=ALL-UNNAMED
)
# Small heaps and a fast-starting JIT: two cores, shared with the tests and other engineers.
BASE_OPTS=(-XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=48m -Xss512k
    -Djava.net.preferIPv4Stack=true "${JPMS_OPTS[@]}")

log() { echo "hadoop.sh: $*" >&2; }
die() {
    echo "hadoop.sh: $*" >&2
    exit 1
}

# The JVM options that make a Hadoop JVM use this cluster's KDC (none without Kerberos).
krb_opts() {
    [ "$KERBEROS" = 1 ] && echo "-Djava.security.krb5.conf=$KRB/krb5.conf"
    return 0
}

fetch() {
    fetch_jars "$ROOT/tests/hadoop/pom.xml" "$JARS" hadoop-yarn-services-api "Hadoop $HADOOP_VERSION's jars (about 95 MB)"
}

# The KDC's jars (MiniKdc and Apache Kerby, about 5 MB), apart from the daemons' classpath.
fetch_kdc() {
    fetch_jars "$ROOT/tests/hadoop/kdc/pom.xml" "$HADOOP_HOME/kdc-jars" hadoop-minikdc "MiniKdc's jars (about 5 MB)"
}

# fetch_jars POM DIR ARTIFACT WHAT: DIR gets POM's runtime dependencies from Maven Central, once.
fetch_jars() {
    local pom=$1 dir=$2 artifact=$3 what=$4 stamp name lock
    name=$(basename "$dir")
    stamp=$(sha256sum "$pom" | cut -c1-64)
    command -v flock >/dev/null || die "flock not found: install util-linux"
    mkdir -p "$HADOOP_HOME"
    # One fetch at a time per machine: scripts/test.sh starts the plain and the Kerberos cluster
    # together, and on a fresh machine both would download into the same $dir.partial (the
    # second's rm -rf pulling it from under the first) and into the same ~/.m2. The second waits
    # here, then finds the first's complete cache.
    exec {lock}>"$HADOOP_HOME/.fetch.lock"
    flock "$lock"
    # The cache is complete when it holds the stamp of the pom.xml it was fetched with.
    if [ "$(cat "$dir/.pom.sha256" 2>/dev/null)" = "$stamp" ]; then
        exec {lock}>&-
        echo "$dir"
        return
    fi
    command -v "$JAVA" >/dev/null || die "java not found: install a JDK 17, e.g. apt-get install openjdk-17-jdk-headless"
    command -v mvn >/dev/null || die "mvn not found: install Maven 3.8+, e.g. apt-get install maven"
    log "downloading $what from Maven Central"
    rm -rf "$dir.partial"
    if ! mvn -q -B -Dstyle.color=never -f "$pom" -Dhadoop.version="$HADOOP_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$dir.partial" >"$HADOOP_HOME/fetch-$name.log" 2>&1; then
        cat "$HADOOP_HOME/fetch-$name.log" >&2
        die "mvn dependency:copy-dependencies failed (is Maven Central reachable?)"
    fi
    [ -f "$dir.partial/$artifact-$HADOOP_VERSION.jar" ] ||
        die "the fetch left no $artifact jar; see $HADOOP_HOME/fetch-$name.log"
    echo "$stamp" >"$dir.partial/.pom.sha256"
    # Rename last, so an interrupted fetch is never mistaken for a complete one.
    rm -rf "$dir"
    mv "$dir.partial" "$dir"
    exec {lock}>&-
    echo "$dir"
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

port() { cat "$STATE/ports/$1"; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

listening() { (echo >"/dev/tcp/$1/$2") 2>/dev/null; }

# The JDK that $JAVA belongs to (its java.home), for the NodeManagers' JAVA_HOME: the service AM
# is started as $JAVA_HOME/bin/java.
java_home() {
    "$JAVA" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/^ *java.home = / { print $2; exit }'
}

# The host names the daemons' principals may carry: Hadoop replaces _HOST by the name a daemon
# finds for its address (localhost or 127.0.0.1 for the NameNode, DataNode and ResourceManager;
# the NodeManagers' own addresses, see write_nm_conf's hosts file; the machine's name).
krb_hosts() { echo localhost 127.0.0.1 "${NM_IPS[@]}" "$(hostname)"; }

# start_kdc: the KDC, its principals and keytabs, and a krb5.conf for MIT's library (kinit, curl,
# Spindle through libgssapi_krb5) and for Java.
start_kdc() {
    command -v kinit >/dev/null || die "kinit not found: install MIT Kerberos' tools, e.g. apt-get install krb5-user"
    mkdir -p "$KRB"
    local h svc=()
    for h in $(krb_hosts); do
        svc+=("hdfs/$h" "yarn/$h" "HTTP/$h")
    done
    echo "=== start $(date -Is)" >>"$STATE/logs/kdc.log"
    setsid nohup "$JAVA" -Xmx128m "${BASE_OPTS[@]}" -cp "$HADOOP_HOME/kdc-jars/*" \
        "$ROOT/tests/hadoop/kdc/SpindleKdc.java" "$KRB" "${SPINDLE_KRB_TICKET_SECONDS:-86400}" \
        "$KRB/service.keytab=$(IFS=,; echo "${svc[*]}")" "$KRB/user.keytab=$HUSER,$HUSER/localhost" \
        >>"$STATE/logs/kdc.log" 2>&1 </dev/null &
    echo $! >"$STATE/kdc.pid"
    local i
    for i in $(seq 1 600); do
        [ -f "$KRB/kdc.port" ] && break
        alive "$STATE/kdc.pid" || die "the KDC exited; see $STATE/logs/kdc.log"
        sleep 0.1
    done
    [ -f "$KRB/kdc.port" ] || die "the KDC wrote no keytabs within 60 s; see $STATE/logs/kdc.log"
    # No DNS and no reverse lookups: a service's principal is HTTP/127.0.0.1, not whatever
    # 127.0.0.1 resolves back to. TCP only (MiniKdc's transport).
    cat >"$KRB/krb5.conf" <<EOF
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1
    forwardable = true
[realms]
    $REALM = {
        kdc = 127.0.0.1:$(cat "$KRB/kdc.port")
    }
EOF
    log "KDC on 127.0.0.1:$(cat "$KRB/kdc.port"), realm $REALM, keytabs in $KRB"
}

# cli_login: with Kerberos, a valid ticket for the user in the script's own cache (MIT's and
# Java's Kerberos both read KRB5CCNAME and KRB5_CONFIG).
cli_login() {
    [ "$KERBEROS" = 1 ] || return 0
    export KRB5_CONFIG=$KRB/krb5.conf KRB5CCNAME=FILE:$KRB/cli.ccache
    klist -s 2>/dev/null || kinit -kt "$KRB/user.keytab" "$HUSER@$REALM" ||
        die "kinit -kt $KRB/user.keytab $HUSER@$REALM failed (is the KDC up? see $STATE/logs/kdc.log)"
}

# kerberos_settings: CORE_KRB, HDFS_KRB and YARN_KRB, the settings a secured cluster adds to
# core-site.xml, hdfs-site.xml and yarn-site.xml (empty without Kerberos).
kerberos_settings() {
    CORE_KRB=() HDFS_KRB=() YARN_KRB=()
    [ "$KERBEROS" = 1 ] || return 0
    local keytab=$KRB/service.keytab
    # The daemons log in as hdfs/HOST and yarn/HOST; the Services API (in the ResourceManager)
    # acts for the SPNEGO-authenticated user, so yarn may impersonate.
    CORE_KRB=(
        "hadoop.security.authentication=kerberos"
        "hadoop.security.authorization=false"
        "hadoop.rpc.protection=authentication"
        "hadoop.proxyuser.yarn.hosts=*"
        "hadoop.proxyuser.yarn.groups=*"
        "hadoop.proxyuser.hdfs.hosts=*"
        "hadoop.proxyuser.hdfs.groups=*"
    )
    # Hadoop 3.4's DataNode starts secured only with privileged ports (jsvc, root) or with SASL on
    # its data port AND dfs.http.policy=HTTPS_ONLY (DataNode.checkSecureConfig): its web server
    # would otherwise be unauthenticated plain HTTP on an unprivileged port. The data port is what
    # matters to Spindle (hdfs-native speaks SASL there), and this test cluster keeps plain HTTP
    # for the NameNode's /jmx readiness checks, so it sets the flag Hadoop's own MiniDFSCluster
    # tests use to skip that one check. SASL is still required on the data port: the DataNode
    # negotiates it whenever dfs.data.transfer.protection is set, before it looks at the flag.
    HDFS_KRB=(
        "dfs.block.access.token.enable=true"
        "dfs.data.transfer.protection=authentication"
        "ignore.secure.ports.for.testing=true"
        "dfs.namenode.kerberos.principal=hdfs/_HOST@$REALM"
        "dfs.namenode.keytab.file=$keytab"
        "dfs.datanode.kerberos.principal=hdfs/_HOST@$REALM"
        "dfs.datanode.keytab.file=$keytab"
        "dfs.web.authentication.kerberos.principal=HTTP/_HOST@$REALM"
        "dfs.web.authentication.kerberos.keytab=$keytab"
    )
    # The web APIs behind SPNEGO; "*" accepts every HTTP/ principal of the keytab, so a client may
    # name the ResourceManager 127.0.0.1 or localhost.
    YARN_KRB=(
        "yarn.resourcemanager.principal=yarn/_HOST@$REALM"
        "yarn.resourcemanager.keytab=$keytab"
        "yarn.nodemanager.principal=yarn/_HOST@$REALM"
        "yarn.nodemanager.keytab=$keytab"
        "hadoop.http.authentication.kerberos.principal=*"
        "hadoop.http.authentication.kerberos.keytab=$keytab"
        "hadoop.http.authentication.simple.anonymous.allowed=false"
        # A container (a replica logging in from its keytab) finds the realm's KDC through the
        # NodeManager's KRB5_CONFIG, as it would through /etc/krb5.conf on a real node; the rest
        # is YARN's default list.
        "yarn.nodemanager.env-whitelist=JAVA_HOME,HADOOP_COMMON_HOME,HADOOP_HDFS_HOME,HADOOP_CONF_DIR,CLASSPATH_PREPEND_DISTCACHE,HADOOP_YARN_HOME,HADOOP_HOME,PATH,LANG,TZ,KRB5_CONFIG"
    )
}

# The configuration every JVM shares (NameNode, DataNode, ResourceManager, clients, the service AM).
write_conf() {
    local conf=$STATE/conf
    # hadoop-hdfs's jar on Maven Central has no web app folders (the tarball ships them apart);
    # the NameNode's and DataNode's HTTP servers fail without them (the /jmx servlet needs none).
    mkdir -p "$conf/webapps/hdfs/WEB-INF" "$conf/webapps/datanode/WEB-INF" "$conf/webapps/secondary/WEB-INF"
    site_xml "$conf/core-site.xml" \
        "fs.defaultFS=hdfs://127.0.0.1:$(port nn)" \
        "hadoop.tmp.dir=$STATE/tmp" \
        "hadoop.registry.zk.quorum=127.0.0.1:$(port zk)" \
        "hadoop.proxyuser.$(id -un).hosts=*" \
        "hadoop.proxyuser.$(id -un).groups=*" \
        "ipc.client.connect.max.retries=3" \
        "ipc.client.connect.retry.interval=500" \
        "${CORE_KRB[@]}"
    # Safe mode ends as soon as the blocks are reported (no 30 s extension), so a restarted
    # NameNode is writable quickly; a stopped DataNode is dead after 2 * 5 s + 10 * 1 s. The
    # DataNode's ports are fixed, so a restarted one is where clients and the NameNode left it.
    site_xml "$conf/hdfs-site.xml" \
        "dfs.replication=1" \
        "dfs.namenode.name.dir=$STATE/name" \
        "dfs.datanode.data.dir=$STATE/dn/data" \
        "dfs.namenode.rpc-address=127.0.0.1:$(port nn)" \
        "dfs.namenode.http-address=127.0.0.1:$(port nn-http)" \
        "dfs.namenode.secondary.http-address=127.0.0.1:0" \
        "dfs.datanode.address=127.0.0.1:$(port dn)" \
        "dfs.datanode.http.address=127.0.0.1:$(port dn-http)" \
        "dfs.datanode.ipc.address=127.0.0.1:$(port dn-ipc)" \
        "dfs.datanode.hostname=127.0.0.1" \
        "dfs.permissions.enabled=false" \
        "dfs.namenode.safemode.extension=0" \
        "dfs.namenode.safemode.min.datanodes=0" \
        "dfs.heartbeat.interval=1" \
        "dfs.namenode.heartbeat.recheck-interval=5000" \
        "dfs.namenode.stale.datanode.interval=10000" \
        "dfs.client.block.write.replace-datanode-on-failure.enable=false" \
        "${HDFS_KRB[@]}"
    yarn_site "$conf/yarn-site.xml"
    capacity_scheduler "$conf/capacity-scheduler.xml"
    cat >"$conf/log4j.properties" <<'EOF'
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
log4j.logger.org.apache.hadoop.conf.Configuration.deprecation=WARN
log4j.logger.org.apache.zookeeper=WARN
log4j.logger.org.apache.curator=WARN
EOF
    # The CLIs log warnings only.
    sed 's/^log4j.rootLogger=INFO/log4j.rootLogger=WARN/' "$conf/log4j.properties" >"$STATE/conf-cli.log4j.properties"
}

# yarn_site FILE [NAME=VALUE...]: the shared YARN settings, plus a NodeManager's own.
yarn_site() {
    local file=$1
    shift
    local am_opts="-Xmx256m ${BASE_OPTS[*]}"
    [ "$KERBEROS" = 1 ] && am_opts+=" $(krb_opts)"
    site_xml "$file" \
        "yarn.resourcemanager.hostname=127.0.0.1" \
        "yarn.resourcemanager.address=127.0.0.1:$(port rm)" \
        "yarn.resourcemanager.scheduler.address=127.0.0.1:$(port rm-scheduler)" \
        "yarn.resourcemanager.resource-tracker.address=127.0.0.1:$(port rm-tracker)" \
        "yarn.resourcemanager.admin.address=127.0.0.1:$(port rm-admin)" \
        "yarn.resourcemanager.webapp.address=127.0.0.1:$(port rm-web)" \
        "yarn.resourcemanager.scheduler.class=org.apache.hadoop.yarn.server.resourcemanager.scheduler.capacity.CapacityScheduler" \
        "yarn.resourcemanager.recovery.enabled=false" \
        "yarn.resourcemanager.system-metrics-publisher.enabled=false" \
        "yarn.timeline-service.enabled=false" \
        "yarn.log-aggregation-enable=false" \
        "yarn.node-labels.enabled=true" \
        "yarn.node-labels.configuration-type=centralized" \
        "yarn.node-labels.fs-store.root-dir=file://$STATE/node-labels" \
        "yarn.resourcemanager.placement-constraints.handler=scheduler" \
        "yarn.webapp.api-service.enable=true" \
        "hadoop.http.filter.initializers=org.apache.hadoop.security.AuthenticationFilterInitializer,org.apache.hadoop.security.HttpCrossOriginFilterInitializer" \
        "hadoop.http.authentication.type=$([ "$KERBEROS" = 1 ] && echo kerberos || echo simple)" \
        "yarn.scheduler.minimum-allocation-mb=128" \
        "yarn.scheduler.maximum-allocation-mb=4096" \
        "yarn.scheduler.maximum-allocation-vcores=4" \
        "yarn.resourcemanager.am.max-attempts=20" \
        "yarn.nm.liveness-monitor.expiry-interval-ms=20000" \
        "yarn.am.liveness-monitor.expiry-interval-ms=30000" \
        "yarn.nodemanager.container-executor.class=org.apache.hadoop.yarn.server.nodemanager.DefaultContainerExecutor" \
        "yarn.nodemanager.resource.memory-mb=4096" \
        "yarn.nodemanager.resource.cpu-vcores=4" \
        "yarn.nodemanager.vmem-check-enabled=false" \
        "yarn.nodemanager.aux-services=" \
        "yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage=100" \
        "yarn.nodemanager.recovery.enabled=false" \
        "yarn.service.am-resource.memory=512" \
        "yarn.service.am.java.opts=$am_opts" \
        "yarn.service.classpath=$JARS/*" \
        "yarn.service.readiness-check-interval.seconds=2" \
        "yarn.service.container-recovery.timeout.ms=10000" \
        "${YARN_KRB[@]}" \
        "$@"
}

capacity_scheduler() {
    local p=yarn.scheduler.capacity.root
    # The default partition (nodes without a label) has no nodes here: both NodeManagers are in
    # exclusive partitions, so only CPU_Q and GPU_Q can run containers. root's accessible labels
    # are always "*" (the CapacityScheduler ignores a setting, with a warning).
    site_xml "$1" \
        "yarn.scheduler.capacity.resource-calculator=org.apache.hadoop.yarn.util.resource.DominantResourceCalculator" \
        "yarn.scheduler.capacity.maximum-am-resource-percent=0.5" \
        "yarn.scheduler.capacity.node-locality-delay=-1" \
        "$p.queues=default,CPU_Q,GPU_Q" \
        "$p.accessible-node-labels.CPU.capacity=100" \
        "$p.accessible-node-labels.GPU.capacity=100" \
        "$p.default.capacity=100" \
        "$p.default.maximum-capacity=100" \
        "$p.default.accessible-node-labels= " \
        "$p.CPU_Q.capacity=0" \
        "$p.CPU_Q.maximum-capacity=100" \
        "$p.CPU_Q.accessible-node-labels=CPU" \
        "$p.CPU_Q.accessible-node-labels.CPU.capacity=100" \
        "$p.CPU_Q.accessible-node-labels.CPU.maximum-capacity=100" \
        "$p.CPU_Q.default-node-label-expression=CPU" \
        "$p.GPU_Q.capacity=0" \
        "$p.GPU_Q.maximum-capacity=100" \
        "$p.GPU_Q.accessible-node-labels=GPU" \
        "$p.GPU_Q.accessible-node-labels.GPU.capacity=100" \
        "$p.GPU_Q.accessible-node-labels.GPU.maximum-capacity=100" \
        "$p.GPU_Q.default-node-label-expression=GPU"
}

# NodeManager N's configuration directory: the shared one with its own yarn-site.xml, and a hosts
# file for its JVM (see start_nodemanager).
write_nm_conf() {
    local n=$1 ip=${NM_IPS[$(($1 - 1))]} dir=$STATE/nm$1
    mkdir -p "$dir/conf" "$dir/local" "$dir/logs"
    cp "$STATE/conf/core-site.xml" "$STATE/conf/hdfs-site.xml" "$STATE/conf/log4j.properties" "$dir/conf/"
    yarn_site "$dir/conf/yarn-site.xml" \
        "yarn.nodemanager.hostname=$ip" \
        "yarn.nodemanager.address=$ip:$(port "nm$n")" \
        "yarn.nodemanager.localizer.address=$ip:0" \
        "yarn.nodemanager.webapp.address=$ip:$(port "nm$n-web")" \
        "yarn.nodemanager.local-dirs=$dir/local" \
        "yarn.nodemanager.log-dirs=$dir/logs"
    # Containers report InetAddress.getLocalHost() as their IP (DefaultContainerExecutor), and the
    # YARN Services readiness check connects to ${THIS_HOST} = that IP. This file makes the machine's
    # host name resolve to the NodeManager's own address inside its JVM; the first line keeps
    # the reverse lookup of that address (the NodeId) the address itself.
    {
        echo "$ip $ip"
        echo "127.0.0.1 localhost"
        echo "$ip $(hostname)"
    } >"$dir/hosts"
}

# launch NAME PIDFILE CONFDIR HEAP [JVM-OPTS...] -- CLASS [ARGS...]: start a daemon JVM in the background.
launch() {
    local name=$1 pidfile=$2 conf=$3 heap=$4
    shift 4
    local opts=()
    while [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    shift
    local logf=$STATE/logs/$name.log
    echo "=== start $(date -Is)" >>"$logf"
    # setsid: the daemon is its own process group, so a Ctrl-C in the caller's terminal leaves it alone.
    setsid nohup "$JAVA" "-Xmx$heap" "${BASE_OPTS[@]}" $(krb_opts) "${opts[@]}" -Dhadoop.log.dir="$STATE/logs" \
        -cp "$conf:$JARS/*" "$@" >>"$logf" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

# wait_port NAME PIDFILE HOST PORT SECONDS
wait_port() {
    local name=$1 pidfile=$2 host=$3 p=$4 secs=$5 i
    for i in $(seq 1 $((secs * 10))); do
        alive "$pidfile" || die "$name exited; see $STATE/logs/$name.log"
        if listening "$host" "$p"; then
            return
        fi
        sleep 0.1
    done
    die "$name did not listen on $host:$p within $secs s; see $STATE/logs/$name.log"
}

start_zookeeper() {
    alive "$STATE/zk.pid" && return
    mkdir -p "$STATE/zk"
    cat >"$STATE/zk.cfg" <<EOF
tickTime=2000
dataDir=$STATE/zk
clientPort=$(port zk)
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,stat
EOF
    launch zookeeper "$STATE/zk.pid" "$STATE/conf" 64m -Dzookeeper.admin.enableServer=false \
        -- org.apache.zookeeper.server.ZooKeeperServerMain "$STATE/zk.cfg"
}

start_namenode() {
    alive "$STATE/namenode.pid" && return
    launch namenode "$STATE/namenode.pid" "$STATE/conf" 256m -- org.apache.hadoop.hdfs.server.namenode.NameNode
}

start_datanode() {
    alive "$STATE/datanode.pid" && return
    mkdir -p "$STATE/dn/data"
    launch datanode "$STATE/datanode.pid" "$STATE/conf" 256m -- org.apache.hadoop.hdfs.server.datanode.DataNode
}

start_resourcemanager() {
    alive "$STATE/resourcemanager.pid" && return
    launch resourcemanager "$STATE/resourcemanager.pid" "$STATE/conf" 384m \
        -- org.apache.hadoop.yarn.server.resourcemanager.ResourceManager
}

start_nodemanager_jvm() {
    local n=$1 dir=$STATE/nm$1
    alive "$dir/pid" && return
    write_nm_conf "$n"
    # Its containers inherit the realm's krb5.conf (yarn.nodemanager.env-whitelist, Kerberos only).
    [ "$KERBEROS" = 1 ] && export KRB5_CONFIG=$KRB/krb5.conf
    # HADOOP_CONF_DIR and JAVA_HOME are in yarn.nodemanager.env-whitelist: containers (the service
    # AM among them) inherit them and so read the shared client configuration.
    HADOOP_CONF_DIR=$STATE/conf JAVA_HOME=$(java_home) MALLOC_ARENA_MAX=4 \
        launch "nodemanager$n" "$dir/pid" "$dir/conf" 256m -Djdk.net.hosts.file="$dir/hosts" \
        -- org.apache.hadoop.yarn.server.nodemanager.NodeManager
}

# cli CLASS ARGS...: a Hadoop command-line tool with the shared configuration.
cli() {
    local class=$1
    shift
    cli_login
    "$JAVA" -Xmx256m "${BASE_OPTS[@]}" $(krb_opts) -Dlog4j.configuration="file:$STATE/conf-cli.log4j.properties" \
        -cp "$STATE/conf:$JARS/*" "$class" "$@"
}

rm_url() { echo "http://127.0.0.1:$(port rm-web)"; }

# rm_get PATH: GET from the ResourceManager's REST API, as $HUSER.
rm_get() {
    local sep='?'
    case $1 in *\?*) sep='&' ;; esac
    if [ "$KERBEROS" = 1 ]; then
        cli_login
        curl -sf --max-time 5 --negotiate -u : "$(rm_url)$1"
    else
        curl -sf --max-time 5 "$(rm_url)$1${sep}user.name=$HUSER"
    fi
}

safemode_off() {
    curl -sf --max-time 3 "http://127.0.0.1:$(port nn-http)/jmx?qry=Hadoop:service=NameNode,name=NameNodeInfo" |
        python3 -c 'import json,sys; b=json.load(sys.stdin)["beans"]; sys.exit(0 if b and b[0]["Safemode"]=="" else 1)' 2>/dev/null
}

live_datanodes() {
    curl -sf --max-time 3 "http://127.0.0.1:$(port nn-http)/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState" |
        python3 -c 'import json,sys; b=json.load(sys.stdin)["beans"]; print(b[0]["NumLiveDataNodes"] if b else 0)' 2>/dev/null || echo 0
}

# wait_block_report: until the DataNode has sent a block report since its latest start.
wait_block_report() {
    local i
    for i in $(seq 1 600); do
        alive "$STATE/datanode.pid" || die "DataNode exited; see $STATE/logs/datanode.log"
        if awk '/^=== start/ { r = 0 } /Successfully sent block report/ { r = 1 } END { exit !r }' "$STATE/logs/datanode.log"; then
            return
        fi
        sleep 0.1
    done
    die "the DataNode sent no block report within 60 s; see $STATE/logs/datanode.log"
}

wait_hdfs() {
    local want_dn=$1 i
    for i in $(seq 1 600); do
        alive "$STATE/namenode.pid" || die "NameNode exited; see $STATE/logs/namenode.log"
        if [ "$(live_datanodes)" -ge "$want_dn" ] && safemode_off; then
            return
        fi
        sleep 0.1
    done
    die "HDFS not ready (live DataNodes $(live_datanodes), want $want_dn; safe mode on?) within 60 s; see $STATE/logs/"
}

# nm_state N: the ResourceManager's view of NodeManager N (its NodeId IP:PORT is fixed at `start`,
# so a restarted NodeManager reconnects as the same node): "STATE LABELS", or "NONE".
nm_state() {
    local id=${NM_IPS[$(($1 - 1))]}:$(port "nm$1")
    rm_get "/ws/v1/cluster/nodes/$id" 2>/dev/null | python3 -c '
import json, sys
n = json.load(sys.stdin)["node"]
print("%s %s" % (n.get("state"), ",".join(n.get("nodeLabels") or []) or "-"))
' 2>/dev/null || echo NONE
}

# wait_nodemanager N: until NodeManager N has registered since its latest start and the
# ResourceManager lists it RUNNING with its label.
wait_nodemanager() {
    local n=$1 want="RUNNING ${NM_LABELS[$(($1 - 1))]}" i s=NONE
    local logf=$STATE/logs/nodemanager$n.log
    for i in $(seq 1 900); do
        alive "$STATE/nm$n/pid" || die "NodeManager $n exited; see $logf"
        if awk '/^=== start/ { r = 0 } /Registered with ResourceManager as/ { r = 1 } END { exit !r }' "$logf"; then
            s=$(nm_state "$n")
            if [ "$s" = "$want" ]; then
                return
            fi
        fi
        sleep 0.2
    done
    die "NodeManager $n is '$s' in the ResourceManager, not '$want', after 180 s; see $logf"
}

# The admin port opens before the ResourceManager is active, and an admin call then waits out a
# 30 s retry; so wait for the ACTIVE state first.
wait_rm_active() {
    local i
    for i in $(seq 1 900); do
        alive "$STATE/resourcemanager.pid" || die "ResourceManager exited; see $STATE/logs/resourcemanager.log"
        if rm_get /ws/v1/cluster/info 2>/dev/null | grep -q '"haState":"ACTIVE"'; then
            return
        fi
        sleep 0.1
    done
    die "the ResourceManager is not ACTIVE after 90 s; see $STATE/logs/resourcemanager.log"
}

services_api_up() {
    rm_get /app/v1/services/version 2>/dev/null | grep -q hadoop_version
}

labels_ok() {
    rm_get /ws/v1/cluster/get-node-labels 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
infos = d.get("nodeLabelInfo") or d.get("nodeLabelsInfo", {}).get("nodeLabelInfo") or []
if isinstance(infos, dict): infos = [infos]
names = {i["name"]: i.get("exclusivity") for i in infos}
sys.exit(0 if names.get("CPU") in (True, "true") and names.get("GPU") in (True, "true") else 1)
' 2>/dev/null
}

env_lines() {
    [ -f "$STATE/ports/nn" ] || die "no cluster in $STATE; run '$0 start' first"
    echo "SPINDLE_HDFS_URL=hdfs://127.0.0.1:$(port nn)"
    echo "SPINDLE_YARN_RM=$(rm_url)"
    echo "SPINDLE_HADOOP3_DIR=$STATE"
    if [ "$KERBEROS" = 1 ]; then
        echo "KRB5_CONFIG=$KRB/krb5.conf"
        echo "HADOOP_CONF_DIR=$STATE/conf"
        echo "SPINDLE_KEYTAB=$KRB/user.keytab"
        echo "SPINDLE_PRINCIPAL=$HUSER@$REALM"
    fi
}

start() {
    KERBEROS=0
    case $# in
        0) ;;
        1) [ "$1" = --kerberos ] || die "start: unknown argument '$1' (expected nothing or --kerberos)"; KERBEROS=1 ;;
        *) die "start takes at most one argument, --kerberos" ;;
    esac
    local t0=$SECONDS
    fetch >/dev/null
    [ "$KERBEROS" = 1 ] && fetch_kdc >/dev/null
    if alive "$STATE/namenode.pid" || alive "$STATE/resourcemanager.pid"; then
        die "a cluster already runs for $STATE; run '$0 stop' first or set SPINDLE_HADOOP_DIR"
    fi
    stop_all quiet
    rm -rf "$STATE"
    mkdir -p "$STATE/logs" "$STATE/ports"
    # A failed start stops what it started and keeps the logs.
    trap 'stop_all quiet; log "start failed; logs kept in $STATE/logs"' EXIT
    local name
    for name in nn nn-http zk rm rm-scheduler rm-tracker rm-admin rm-web dn dn-http dn-ipc nm1 nm1-web nm2 nm2-web nm3 nm3-web; do
        free_port >"$STATE/ports/$name"
    done
    [ "$KERBEROS" = 1 ] && start_kdc
    kerberos_settings
    write_conf
    log "state in $STATE, logs in $STATE/logs"
    # The format (a JVM of its own) overlaps with ZooKeeper's and the ResourceManager's start.
    start_zookeeper
    start_resourcemanager
    cli org.apache.hadoop.hdfs.server.namenode.NameNode -format -nonInteractive -force \
        >"$STATE/logs/format.log" 2>&1 || die "NameNode -format failed; see $STATE/logs/format.log"
    start_namenode
    wait_rm_active
    # Labels first, so each NodeManager registers straight into its partition.
    cli org.apache.hadoop.yarn.client.cli.RMAdminCLI -addToClusterNodeLabels "CPU(exclusive=true),GPU(exclusive=true)" \
        >>"$STATE/logs/rmadmin.log" 2>&1 || die "rmadmin -addToClusterNodeLabels failed; see $STATE/logs/rmadmin.log"
    cli org.apache.hadoop.yarn.client.cli.RMAdminCLI -replaceLabelsOnNode "${NM_IPS[0]}=CPU ${NM_IPS[1]}=GPU ${NM_IPS[2]}=CPU" \
        >>"$STATE/logs/rmadmin.log" 2>&1 || die "rmadmin -replaceLabelsOnNode failed; see $STATE/logs/rmadmin.log"
    log "labels added (${NM_IPS[0]}=CPU ${NM_IPS[1]}=GPU ${NM_IPS[2]}=CPU) at $((SECONDS - t0)) s"
    wait_port namenode "$STATE/namenode.pid" 127.0.0.1 "$(port nn)" 90
    start_datanode
    start_nodemanager_jvm 1
    # The secured cluster is kept small (it shares two cores with the plain one): NodeManager 1 only.
    if [ "$KERBEROS" != 1 ]; then
        start_nodemanager_jvm 2
        start_nodemanager_jvm 3
    fi
    wait_port zookeeper "$STATE/zk.pid" 127.0.0.1 "$(port zk)" 30
    wait_hdfs 1
    log "HDFS out of safe mode at $((SECONDS - t0)) s"
    wait_nodemanager 1
    if [ "$KERBEROS" != 1 ]; then
        wait_nodemanager 2
        wait_nodemanager 3
    fi
    labels_ok || die "the ResourceManager does not list CPU and GPU as exclusive labels; see $STATE/logs/rmadmin.log"
    local i
    for i in $(seq 1 300); do
        services_api_up && break
        sleep 0.2
    done
    services_api_up || die "the YARN Services API ($(rm_url)/app/v1/services/version) does not answer; see $STATE/logs/resourcemanager.log"
    trap - EXIT
    log "cluster up in $((SECONDS - t0)) s"
    env_lines
}

stop_pid() {
    local pidfile=$1 pid i
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for i in $(seq 1 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

# Kill what NodeManager N's containers left running: each container is a session of its own
# (DefaultContainerExecutor runs it under setsid) whose leader's pid is in a .pid file under
# nmPrivate; anything else whose working directory is under the NodeManager's dirs goes too.
kill_containers() {
    local dir=$STATE/nm$1 f pid p cwd
    [ -d "$dir/local" ] || return 0
    while IFS= read -r f; do
        pid=$(cat "$f" 2>/dev/null) || continue
        [ -n "$pid" ] && kill -9 -- "-$pid" 2>/dev/null || true
    done < <(find "$dir/local/nmPrivate" -name '*.pid' 2>/dev/null)
    for p in /proc/[0-9]*; do
        cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
        case $cwd in "$dir"/*) kill -9 "${p#/proc/}" 2>/dev/null || true ;; esac
    done
}

# stop_pids PIDFILE...: SIGTERM them all at once, SIGKILL what still runs 10 s later.
stop_pids() {
    local f pids=() pid i
    for f in "$@"; do
        alive "$f" && pids+=("$(cat "$f")")
    done
    if [ ${#pids[@]} -gt 0 ]; then
        kill "${pids[@]}" 2>/dev/null || true
        for i in $(seq 1 100); do
            for pid in "${pids[@]}"; do
                kill -0 "$pid" 2>/dev/null && break
                pid=
            done
            [ -z "$pid" ] && break
            sleep 0.1
        done
        kill -9 "${pids[@]}" 2>/dev/null || true
    fi
    rm -f "$@"
}

stop_all() {
    [ -d "$STATE" ] || return 0
    # NodeManagers first: stopping, they stop their containers (the service AMs among them).
    stop_pids "$STATE/nm1/pid" "$STATE/nm2/pid" "$STATE/nm3/pid"
    kill_containers 1
    kill_containers 2
    kill_containers 3
    stop_pids "$STATE/resourcemanager.pid" "$STATE/datanode.pid" "$STATE/namenode.pid" "$STATE/zk.pid" "$STATE/kdc.pid"
    [ "${1:-}" = quiet ] || log "stopped the cluster in $STATE (logs kept in $STATE/logs)"
}

status() {
    [ -f "$STATE/ports/nn" ] || {
        echo "no cluster in $STATE"
        return 1
    }
    local up=1 name f n daemons nms=(1 2 3)
    daemons=(zookeeper:zk.pid namenode:namenode.pid datanode:datanode.pid
        resourcemanager:resourcemanager.pid nodemanager1:nm1/pid nodemanager2:nm2/pid nodemanager3:nm3/pid)
    # The secured cluster has its KDC and NodeManager 1 only.
    if [ "$KERBEROS" = 1 ]; then
        daemons=(kdc:kdc.pid "${daemons[@]:0:5}")
        nms=(1)
    fi
    for name in "${daemons[@]}"; do
        f=$STATE/${name#*:}
        name=${name%%:*}
        if alive "$f"; then
            echo "$name: running (pid $(cat "$f"))"
        else
            echo "$name: stopped"
            up=0
        fi
    done
    for n in "${nms[@]}"; do
        echo "nodemanager$n ${NM_IPS[$((n - 1))]}:$(port "nm$n") in the ResourceManager: $(nm_state "$n") (web http://${NM_IPS[$((n - 1))]}:$(port "nm$n-web"))"
    done
    echo "NameNode web: http://127.0.0.1:$(port nn-http)"
    env_lines
    [ "$up" = 1 ]
}

nm_arg() {
    case ${1:-} in
        1 | 2 | 3) echo "$1" ;;
        *) die "expected a NodeManager number: 1 (CPU, ${NM_IPS[0]}), 2 (GPU, ${NM_IPS[1]}) or 3 (CPU, ${NM_IPS[2]})" ;;
    esac
}

yarn_cmd() {
    local sub=${1:-}
    [ $# -gt 0 ] && shift
    case $sub in
        rmadmin) cli org.apache.hadoop.yarn.client.cli.RMAdminCLI "$@" ;;
        app | application | applicationattempt | container) cli org.apache.hadoop.yarn.client.cli.ApplicationCLI "$sub" "$@" ;;
        node) cli org.apache.hadoop.yarn.client.cli.NodeCLI "$@" ;;
        queue) cli org.apache.hadoop.yarn.client.cli.QueueCLI "$@" ;;
        cluster) cli org.apache.hadoop.yarn.client.cli.ClusterCLI "$@" ;;
        logs) cli org.apache.hadoop.yarn.client.cli.LogsCLI "$@" ;;
        version) cli org.apache.hadoop.util.VersionInfo ;;
        *) die "yarn: expected rmadmin, app, application, applicationattempt, container, node, queue, cluster, logs or version" ;;
    esac
}

cmd=${1:-}
[ $# -gt 0 ] && shift
kerberos_settings
case $cmd in
    fetch) fetch ;;
    start) start "$@" ;;
    stop) stop_all ;;
    status) status ;;
    env) env_lines ;;
    stop-namenode) stop_pid "$STATE/namenode.pid" ;;
    start-namenode)
        start_namenode
        wait_port namenode "$STATE/namenode.pid" 127.0.0.1 "$(port nn)" 90
        # Writable once the DataNode (if it runs) has re-registered and reported its blocks.
        wait_hdfs "$(alive "$STATE/datanode.pid" && echo 1 || echo 0)"
        ;;
    restart-namenode)
        stop_pid "$STATE/namenode.pid"
        "$0" start-namenode
        ;;
    kill-datanode)
        [ -f "$STATE/datanode.pid" ] || die "no DataNode runs in $STATE"
        kill -9 "$(cat "$STATE/datanode.pid")" 2>/dev/null || true
        rm -f "$STATE/datanode.pid"
        ;;
    start-datanode)
        start_datanode
        wait_block_report
        wait_hdfs 1
        ;;
    restart-datanode)
        "$0" kill-datanode
        "$0" start-datanode
        ;;
    kill-nodemanager)
        n=$(nm_arg "${1:-}")
        [ -f "$STATE/nm$n/pid" ] && kill -9 "$(cat "$STATE/nm$n/pid")" 2>/dev/null || true
        rm -f "$STATE/nm$n/pid"
        kill_containers "$n"
        ;;
    stop-nodemanager)
        n=$(nm_arg "${1:-}")
        stop_pid "$STATE/nm$n/pid"
        kill_containers "$n"
        ;;
    start-nodemanager)
        n=$(nm_arg "${1:-}")
        start_nodemanager_jvm "$n"
        wait_nodemanager "$n"
        ;;
    yarn) yarn_cmd "$@" ;;
    fs) cli org.apache.hadoop.fs.FsShell "$@" ;;
    dfsadmin) cli org.apache.hadoop.hdfs.tools.DFSAdmin "$@" ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
        exit 64
        ;;
esac
