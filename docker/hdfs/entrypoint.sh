#!/usr/bin/env bash
# hdfs-node namenode|datanode: writes the Hadoop configuration for a compose network (the
# NameNode is reached as $NAMENODE_HOST:8020; DataNodes advertise their container host name so
# spindle in other containers can read blocks), formats the NameNode once, then execs Java, so
# the daemon is PID 1 and gets docker's SIGTERM.
set -euo pipefail
role=${1:?namenode or datanode}
nn=${NAMENODE_HOST:-namenode}
state=/var/lib/hdfs
conf=$state/conf
mkdir -p "$conf/webapps/hdfs/WEB-INF" "$conf/webapps/datanode/WEB-INF" "$conf/webapps/static"
prop() { echo "  <property><name>$1</name><value>$2</value></property>"; }
{
  echo '<?xml version="1.0"?><configuration>'
  prop fs.defaultFS "hdfs://$nn:8020"
  prop hadoop.tmp.dir "$state/tmp"
  echo '</configuration>'
} >"$conf/core-site.xml"
{
  echo '<?xml version="1.0"?><configuration>'
  prop dfs.replication "${REPLICATION:-2}"
  prop dfs.namenode.name.dir "$state/name"
  prop dfs.datanode.data.dir "$state/data"
  prop dfs.namenode.rpc-address "$nn:8020"
  prop dfs.namenode.rpc-bind-host 0.0.0.0
  prop dfs.namenode.http-address 0.0.0.0:50070
  prop dfs.datanode.address 0.0.0.0:50010
  prop dfs.datanode.hostname "$(hostname)"
  prop dfs.client.use.datanode.hostname true
  prop dfs.datanode.use.datanode.hostname true
  prop dfs.namenode.datanode.registration.ip-hostname-check false
  prop dfs.permissions.enabled false
  prop dfs.webhdfs.enabled false
  prop dfs.namenode.safemode.extension 0
  prop dfs.namenode.safemode.min.datanodes 0
  prop dfs.heartbeat.interval 1
  prop dfs.namenode.heartbeat.recheck-interval 5000
  prop dfs.client.block.write.replace-datanode-on-failure.enable false
  echo '</configuration>'
} >"$conf/hdfs-site.xml"
cat >"$conf/log4j.properties" <<'LOG'
log4j.rootLogger=INFO,console
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
LOG
java=(java -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.net.preferIPv4Stack=true
      -cp "$conf:/opt/hadoop/jars/*")
case $role in
  namenode)
    if [ ! -d "$state/name/current" ]; then
      "${java[@]}" org.apache.hadoop.hdfs.server.namenode.NameNode -format -nonInteractive -force
    fi
    exec "${java[@]}" org.apache.hadoop.hdfs.server.namenode.NameNode ;;
  datanode)
    exec "${java[@]}" org.apache.hadoop.hdfs.server.datanode.DataNode ;;
  *) echo "hdfs-node: unknown role '$role' (namenode or datanode)" >&2; exit 64 ;;
esac
