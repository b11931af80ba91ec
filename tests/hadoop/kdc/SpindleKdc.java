// The KDC of `scripts/hadoop.sh start --kerberos`: Hadoop's MiniKdc (Apache Kerby) on loopback,
// run as a single-file program (java -cp KDC-JARS/* SpindleKdc.java ...), so nothing is built.
//
//   SpindleKdc WORKDIR MAX_TICKET_SECONDS KEYTAB=PRINCIPAL[,PRINCIPAL...]...
//
// Realm EXAMPLE.COM on 127.0.0.1, a free TCP port. Each KEYTAB gets the keys of its principals
// (random keys: nobody types a password). When every keytab is written, the port goes into
// WORKDIR/kdc.port (written last, under another name and renamed, so a reader never sees half
// of it); the process then serves until it is killed.

import java.io.File;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.Properties;
import org.apache.hadoop.minikdc.MiniKdc;

public class SpindleKdc {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: SpindleKdc WORKDIR MAX_TICKET_SECONDS KEYTAB=PRINCIPAL[,PRINCIPAL...]...");
            System.exit(64);
        }
        File work = new File(args[0]);
        Properties conf = MiniKdc.createConf();
        conf.setProperty(MiniKdc.KDC_BIND_ADDRESS, "127.0.0.1");
        conf.setProperty(MiniKdc.KDC_PORT, "0");
        conf.setProperty(MiniKdc.ORG_NAME, "EXAMPLE");
        conf.setProperty(MiniKdc.ORG_DOMAIN, "COM");
        // Kerby counts both lifetimes in seconds.
        conf.setProperty(MiniKdc.MAX_TICKET_LIFETIME, args[1]);
        conf.setProperty(MiniKdc.MAX_RENEWABLE_LIFETIME, args[1]);
        MiniKdc kdc = new MiniKdc(conf, work);
        kdc.start();
        Runtime.getRuntime().addShutdownHook(new Thread(kdc::stop));
        for (int i = 2; i < args.length; i++) {
            String[] spec = args[i].split("=", 2);
            if (spec.length != 2 || spec[1].isEmpty()) {
                System.err.println("SpindleKdc: expected KEYTAB=PRINCIPAL[,PRINCIPAL...], got '" + args[i] + "'");
                System.exit(64);
            }
            File keytab = new File(spec[0]);
            keytab.delete();
            kdc.createPrincipal(keytab, spec[1].split(","));
            System.err.println("SpindleKdc: " + keytab + ": " + spec[1]);
        }
        File tmp = new File(work, "kdc.port.tmp");
        Files.writeString(tmp.toPath(), kdc.getPort() + "\n");
        Files.move(tmp.toPath(), new File(work, "kdc.port").toPath(), StandardCopyOption.ATOMIC_MOVE);
        System.err.println("SpindleKdc: realm " + kdc.getRealm() + " on 127.0.0.1:" + kdc.getPort());
        Thread.currentThread().join();
    }
}
