// The Redis link of the Node.js build (src/wasm/backend_redis.rs): two node-redis connections to
// one server, kept as a pair — a data connection with CLIENT TRACKING on, and a subscriber
// connection its invalidations are redirected to (docs/REDIS.md, "Coherence of the local tier").
//
// The `redis` npm package is imported only here, and only when a store is opened with a `redis`
// option, so it is an optional peer dependency and the browser build never sees it. The pair is
// opened on demand; when either connection fails both are dropped, `onReset` tells the store to
// drop its local copies, and the next command opens a new pair (which calls `onReset` again once
// tracking is back: invalidations may have been missed meanwhile). Nothing is queued while the
// server is away: a command fails at once, so a read says so and a flush is retried later.
// Both sockets are unref'ed while idle, so a script that never calls `close()` still exits (its
// pending writes are flushed at `beforeExit`); the data socket is ref'ed while a command waits.

let redisModule = null;

async function loadRedis() {
  if (!redisModule) {
    const major = Number(process.versions.node.split('.')[0]);
    if (major < 20) {
      const error = new Error(
        `the 'redis' option needs Node.js 20 or later (node-redis does); this is Node.js ${process.versions.node}`,
      );
      error.code = 'Backend';
      throw error;
    }
    try {
      redisModule = await import('redis');
    } catch (e) {
      const error = new Error(
        "the 'redis' option needs the npm package 'redis' (node-redis), an optional peer " +
          `dependency of tidekv: npm install redis (${e && e.message ? e.message : e})`,
      );
      error.code = 'Backend';
      throw error;
    }
  }
  return redisModule;
}

function describe(e) {
  if (e instanceof AggregateError && e.errors && e.errors.length) return describe(e.errors[0]);
  return e && e.message ? String(e.message) : e && e.code ? String(e.code) : String(e);
}

function arg(a) {
  return a instanceof Uint8Array && !Buffer.isBuffer(a) ? Buffer.from(a.buffer, a.byteOffset, a.byteLength) : a;
}

// Replies as Rust reads them: bulk strings as Uint8Array when `binary`, else as strings.
function reply(r, binary) {
  if (Buffer.isBuffer(r)) return binary ? new Uint8Array(r.buffer, r.byteOffset, r.byteLength) : r.toString('utf8');
  if (Array.isArray(r)) return r.map((x) => reply(x, binary));
  return r;
}

/** Whether `e` is an error reply of the server (the connection is fine). */
function isReplyError(e) {
  return e && (e.constructor?.name === 'SimpleError' || e.constructor?.name === 'BlobError' || e.constructor?.name === 'ErrorReply');
}

export class RedisLink {
  /**
   * `url`: redis://… or rediss://…; `prefix`: the BCAST prefix `{tidekv:<db>:`;
   * `onInvalidate(keys)`: Redis keys (strings) another client
   * changed, or `null` for all; `onReset()`: local copies can no longer be trusted.
   */
  constructor(url, prefix, onInvalidate, onReset) {
    this.url = url;
    this.prefix = prefix;
    this.onInvalidate = onInvalidate;
    this.onReset = onReset;
    this.pair = null; // a promise of { data, sub, lost }
    this.current = null;
    this.lastError = null;
    this.closed = false;
    this.outstanding = 0;
  }

  /** Whether a pair is up. */
  get connected() {
    return this.current !== null && !this.current.lost;
  }

  /** The pair, opened if there is none. Rejects (naming the cause) if it cannot be opened. */
  ensure() {
    if (this.closed) return Promise.reject(new Error('the Redis link is closed'));
    if (!this.pair) {
      this.pair = this.open().catch((e) => {
        this.pair = null;
        this.lastError = describe(e);
        throw new Error(`cannot connect to Redis at ${this.redacted()}: ${describe(e)}`);
      });
    }
    return this.pair;
  }

  /** The URL without its password, for messages. */
  redacted() {
    try {
      const u = new URL(this.url);
      if (u.password) u.password = '***';
      return u.toString();
    } catch {
      return '(unparsable URL)';
    }
  }

  async open() {
    const { createClient, RESP_TYPES } = await loadRedis();
    const options = {
      url: this.url,
      RESP: 2,
      disableOfflineQueue: true,
      socket: { reconnectStrategy: false, connectTimeout: 5000 },
    };
    const pair = { data: null, sub: null, lost: false };
    const lose = (e) => this.lose(pair, e);
    pair.data = createClient(options).withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
    pair.sub = createClient(options);
    for (const client of [pair.data, pair.sub]) {
      client.on('error', lose);
      client.on('end', () => lose(new Error('connection closed')));
    }
    try {
      await pair.data.connect();
      await pair.sub.connect();
      const id = await pair.sub.sendCommand(['CLIENT', 'ID']);
      await pair.sub.subscribe(
        '__redis__:invalidate',
        (keys) => {
          if (!pair.lost) this.onInvalidate(keys === null ? null : keys.map((k) => k.toString('utf8')));
        },
        true,
      );
      await pair.data.sendCommand(['CLIENT', 'TRACKING', 'ON', 'REDIRECT', String(id), 'BCAST', 'PREFIX', this.prefix, 'NOLOOP']);
    } catch (e) {
      this.lose(pair, e);
      throw e;
    }
    if (pair.lost) throw new Error(pair.error ?? 'connection lost while opening');
    pair.sub.unref();
    if (this.outstanding === 0) pair.data.unref();
    this.current = pair;
    this.lastError = null;
    // Invalidations may have been missed before tracking was on: nothing local is trusted.
    this.onReset();
    return pair;
  }

  lose(pair, e) {
    if (pair.lost) return;
    pair.lost = true;
    pair.error = describe(e);
    this.lastError = pair.error;
    for (const client of [pair.data, pair.sub]) {
      if (client) {
        try {
          client.destroy();
        } catch {}
      }
    }
    if (this.current === pair) {
      this.current = null;
      this.pair = null;
      this.onReset();
    }
  }

  /** Runs `f(pair)` on an open pair, keeping the process alive while it waits. */
  async busy(f) {
    this.outstanding += 1;
    let pair;
    try {
      pair = await this.ensure();
      pair.data.ref();
      return await f(pair);
    } finally {
      this.outstanding -= 1;
      if (this.outstanding === 0 && pair && !pair.lost) pair.data.unref();
    }
  }

  /**
   * Sends `commands` (arrays of string | Uint8Array) in one pipeline; resolves with one reply
   * each, an `Error` in place of a reply the server refused. Rejects if the connection failed.
   */
  run(commands, binary) {
    return this.busy(async (pair) => {
      const settled = await Promise.allSettled(commands.map((c) => pair.data.sendCommand(c.map(arg))));
      return settled.map((s) => {
        if (s.status === 'fulfilled') return reply(s.value, binary);
        if (isReplyError(s.reason)) return new Error(describe(s.reason));
        throw this.failure(pair, s.reason);
      });
    });
  }

  /**
   * Sends `commands` as one MULTI/EXEC; resolves with their replies, rejects naming the
   * commands the server refused, or the connection failure.
   */
  transaction(commands) {
    return this.busy(async (pair) => {
      const multi = pair.data.multi();
      for (const c of commands) multi.addCommand(c.map(arg));
      try {
        return reply(await multi.exec(), false);
      } catch (e) {
        if (e && Array.isArray(e.errorIndexes)) {
          const why = e.errorIndexes.map((i) => `command ${i}: ${describe(e.replies[i])}`).join('; ');
          throw new Error(`transaction failed (${why})`);
        }
        if (isReplyError(e)) throw new Error(describe(e));
        throw this.failure(pair, e);
      }
    });
  }

  failure(pair, e) {
    if (!pair.lost) this.lose(pair, e);
    return new Error(`Redis connection lost (${pair.error ?? describe(e)})`);
  }

  /** Every key matching `pattern`, by SCAN (never KEYS). */
  async scan(pattern) {
    const keys = [];
    let cursor = '0';
    do {
      const [r] = await this.run([['SCAN', cursor, 'MATCH', pattern, 'COUNT', '1000']], false);
      if (r instanceof Error) throw r;
      cursor = r[0];
      keys.push(...r[1]);
    } while (cursor !== '0');
    return keys;
  }

  /** Drops the pair; later calls fail. */
  close() {
    this.closed = true;
    const pair = this.current;
    this.current = null;
    this.pair = null;
    if (pair) {
      pair.lost = true;
      for (const client of [pair.data, pair.sub]) {
        try {
          client.destroy();
        } catch {}
      }
    }
  }
}
