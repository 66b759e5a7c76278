// Starts mongo-java-server 1.47.0 (de.bwaldvogel, in-memory backend): the MongoDB-wire server
// that scripts/services.sh runs for the tests on 127.0.0.1:27017, compiling this file once per
// change of its source.
//
//     java -cp '<classes>:<jars>/*' Launcher [host] [port]     (default 127.0.0.1 27017)
//
// Three things differ from the library as shipped; none changes what a query or a write means.
//
// 1. The reported version. The server reports MongoDB 5.0.0 with maxWireVersion 13: the
//    library's own ServerVersion.MONGO_5_0 reports wire version 8, which PyMongo 4.14 and later
//    refuse.
//
// 2. The choice of candidate documents (a planner improvement). The library reads a filter
//    through a unique index only when the filter's top-level keys are exactly that index's
//    keys (AbstractUniqueIndex.canHandle), so one more condition beside `_id`, as in a
//    conditional update {_id: X, _v: 5, "_fence.ab12": {$not: {$gt: 3}}}, scans the whole
//    collection (about 15 ms per update at 50 000 documents instead of well under a
//    millisecond). Here, when every key of a unique index (the `_id` index first) is a
//    top-level key of the filter, the candidates are what that index gives for those keys
//    alone, by the library's own canHandle/getPositions, and the library's own matcher then
//    tests each candidate against the WHOLE filter. A top-level key is a conjunct of the
//    filter, so every matching document is among the candidates: the result is the one the
//    scan would give (the order of several matches without a sort may differ, as it may on
//    MongoDB); only the work to find it shrinks, as MongoDB's query planner would have it.
//    Filters that no unique index covers go to the library unchanged.
//
// 3. Authentication. The server keeps no users, and the library lacks the SASL commands, so a
//    client given credentials got CommandNotFound; it now gets what MongoDB answers for a user
//    it does not know: AuthenticationFailed (code 18).
//
// Nothing here weakens a guarantee: every operation on a collection stays one synchronized
// call of the library (AbstractSynchronizedMongoCollection), so the filter of an update and
// the update itself are isolated from every other write to that collection, and unique
// indexes are checked as before. Data lives in memory only and is gone when the process ends.
// SIGTERM shuts the server down.

import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.CollectionOptions;
import de.bwaldvogel.mongo.backend.Constants;
import de.bwaldvogel.mongo.backend.CursorRegistry;
import de.bwaldvogel.mongo.backend.Index;
import de.bwaldvogel.mongo.backend.IndexKey;
import de.bwaldvogel.mongo.backend.QueryResult;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.backend.memory.MemoryCollection;
import de.bwaldvogel.mongo.backend.memory.MemoryDatabase;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.exception.MongoServerError;
import io.netty.channel.Channel;
import java.util.ArrayList;
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

    /** The memory backend, whose databases make {@link PlannedCollection}s. */
    private static final class PlannedBackend extends MemoryBackend {
        @Override
        public MemoryDatabase openOrCreateDatabase(String databaseName) {
            return new PlannedDatabase(databaseName, getCursorRegistry());
        }

        @Override
        public Document handleCommand(Channel channel, String databaseName, String command, Document query) {
            if (command.equalsIgnoreCase("saslStart") || command.equalsIgnoreCase("authenticate")) {
                throw new MongoServerError(18, "AuthenticationFailed", "Authentication failed.");
            }
            return super.handleCommand(channel, databaseName, command, query);
        }
    }

    private static final class PlannedDatabase extends MemoryDatabase {
        PlannedDatabase(String databaseName, CursorRegistry cursorRegistry) {
            super(databaseName, cursorRegistry);
        }

        @Override
        protected MemoryCollection openOrCreateCollection(String collectionName, CollectionOptions options) {
            return new PlannedCollection(this, collectionName, options, cursorRegistry);
        }
    }

    /** A memory collection that finds its candidates through a unique index the filter covers. */
    private static final class PlannedCollection extends MemoryCollection {
        PlannedCollection(MongoDatabase database, String collectionName, CollectionOptions options,
                          CursorRegistry cursorRegistry) {
            super(database, collectionName, options, cursorRegistry);
        }

        @Override
        protected QueryResult queryDocuments(Document query, Document orderBy, int numberToSkip, int limit,
                                             int batchSize, Document fieldSelector) {
            if (query != null) {
                for (Index<Integer> index : uniqueIndexesIdFirst()) {
                    Document keys = coveredKeys(query, index);
                    if (keys != null && index.canHandle(keys)) {
                        Iterable<Integer> candidates = index.getPositions(keys);
                        return matchDocuments(query, candidates, orderBy, numberToSkip, limit, batchSize,
                                fieldSelector);
                    }
                }
            }
            return super.queryDocuments(query, orderBy, numberToSkip, limit, batchSize, fieldSelector);
        }

        private List<Index<Integer>> uniqueIndexesIdFirst() {
            List<Index<Integer>> ordered = new ArrayList<>();
            for (Index<Integer> index : getIndexes()) {
                if (!index.isUnique()) {
                    continue;
                }
                List<IndexKey> keys = index.getKeys();
                boolean onId = keys.size() == 1 && keys.get(0).getKey().equals(Constants.ID_FIELD);
                if (onId) {
                    ordered.add(0, index);
                } else {
                    ordered.add(index);
                }
            }
            return ordered;
        }

        /** The filter's conditions on the index's keys alone, or null if one key is not named. */
        private static Document coveredKeys(Document query, Index<Integer> index) {
            Document keys = new Document();
            for (IndexKey key : index.getKeys()) {
                if (!query.containsKey(key.getKey())) {
                    return null;
                }
                keys.put(key.getKey(), query.get(key.getKey()));
            }
            return keys;
        }
    }

    public static void main(String[] args) throws InterruptedException {
        String host = args.length > 0 ? args[0] : "127.0.0.1";
        int port = args.length > 1 ? Integer.parseInt(args[1]) : 27017;
        MongoServer server = new MongoServer(new PlannedBackend().version(new ReportedVersion()));
        server.bind(host, port);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.shutdownNow();
            stopped.countDown();
        }, "shutdown"));
        System.err.printf("mongo-java-server listening on %s:%d (reports %s, wire version %d;"
                + " unique indexes serve compound filters)%n",
                host, port, new ReportedVersion().toVersionString(), WIRE_VERSION);
        stopped.await();
    }
}
