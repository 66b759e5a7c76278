// Starts mongo-java-server (de.bwaldvogel, in-memory backend) for benchmarks; used by
// scripts/services.sh with PW_MONGO_SERVER=mongo-java-server, which compiles this file once.
//
//     java -cp '<jars>:<classes>' Launcher [host] [port]     (default 127.0.0.1 27018)
//
// The server reports MongoDB 5.0.0 with maxWireVersion 13: its own ServerVersion.MONGO_5_0
// reports wire version 8, which PyMongo 4.14 and later refuse. The reported version is all
// that changes; the backend's semantics stay mongo-java-server's. Data lives in memory only
// and is gone when the process ends. SIGTERM shuts the server down.

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import java.util.List;
import java.util.concurrent.CountDownLatch;

public final class Launcher {
    private static final int WIRE_VERSION = 13;

    private Launcher() {}

    /** MongoDB 5.0's version and wire version, as a server of that version reports them. */
    private static final class ReportedVersion implements MongoVersion {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(5, 0, 0);
        }

        @Override
        public int getWireVersion() {
            return WIRE_VERSION;
        }
    }

    public static void main(String[] args) throws InterruptedException {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 27018;
        MongoServer server = new MongoServer(new MemoryBackend().version(new ReportedVersion()));
        server.bind(host, port);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.shutdownNow();
            stopped.countDown();
        }, "shutdown"));
        System.err.printf("mongo-java-server listening on %s:%d (reports %s, wire version %d)%n",
                host, port, new ReportedVersion().toVersionString(), WIRE_VERSION);
        stopped.await();
    }
}
