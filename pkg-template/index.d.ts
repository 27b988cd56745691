// Types of the tidekv npm package. The same declarations describe the browser build (web.js)
// and the Node.js build (node.js); the 'fs' backend and Redis stores exist only in the Node.js
// build.

/** A JSON value: what `set` stores as kind `'json'`. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * A value as `get` returns it when no type is given: a `Uint8Array` for bytes, a `string` for
 * text, a JSON value for JSON. (`get<User>('u')` names the type you stored instead.)
 */
export type Value = Uint8Array | string | JsonValue;

/**
 * What `setMany` and `getOrSet` loaders accept: a `Uint8Array` (stored as bytes), a `string`
 * (text), or any other JSON-serialisable value — interfaces and class instances included
 * (JSON keeps their own enumerable properties). What JSON cannot hold (a function, a BigInt, a
 * `Date`, a `Map`) is refused at run time with a `TypeError`.
 */
export type Storable = Value | object;

/**
 * `T` when `set` can store it, `never` otherwise: what JSON has no form for (functions,
 * `BigInt`, symbols, `undefined`, `Date`, `Map`, `Set`, typed arrays other than `Uint8Array`)
 * is refused at the top and inside objects and arrays. Methods of a class are allowed: JSON
 * ignores them (only own enumerable properties are stored).
 */
export type Serializable<T> = T extends string | number | boolean | null | Uint8Array
  ? T
  : T extends bigint | symbol | undefined | Date | Map<unknown, unknown> | Set<unknown> | ArrayBufferView | ArrayBuffer
    ? never
    : T extends (...args: never[]) => unknown
      ? never
      : T extends readonly (infer U)[]
        ? readonly SerializableMember<U>[]
        : T extends object
          ? { [K in keyof T]: SerializableMember<T[K]> }
          : never;

/** A property or element of a value `set` stores: also `undefined` (dropped, as JSON does) and methods. */
export type SerializableMember<T> = T extends undefined ? T : T extends (...args: never[]) => unknown ? T : Serializable<T>;

/** The kind a value was stored as. */
export type ValueKind = 'bytes' | 'text' | 'json';

/** Where a store keeps its data. */
export type BackendName = 'indexeddb' | 'fs' | 'memory';

/**
 * How far `flush()` goes before it resolves.
 * - `'buffered'`: files are written to the OS; IndexedDB uses a relaxed transaction.
 * - `'fsync'`: files are written and fsync'ed (default for files); IndexedDB: as `'strict'`.
 * - `'strict'`: files as `'fsync'`; IndexedDB passes `{ durability: 'strict' }`.
 * IndexedDB defaults to relaxed.
 */
export type Durability = 'buffered' | 'fsync' | 'strict';

/**
 * Which keys a memory cap (`maxMemory`) evicts first.
 * - `'lru'` (default): the least recently used key (a get or a set uses it), sampled as Redis
 *   does: of a few keys picked at random, the least recently used goes.
 * - `'nearest-expiry'`: the key whose TTL runs out soonest (Redis's `volatile-ttl`); keys
 *   without a TTL go least recently used first once no key with a TTL is left.
 */
export type EvictionPolicy = 'lru' | 'nearest-expiry';

/** Options of `Store.memory()`. */
export interface MemoryOptions {
  /** Pending bytes at which a flush starts. Default 1 MiB (1048576). */
  bufferSize?: number;
  /** Longest time a write waits in the buffer before a flush, in ms. Default 1000. */
  flushInterval?: number;
  /** Largest value accepted, in bytes. Default 512 MiB. */
  maxValueSize?: number;
  /** Compress persisted values of at least 1 KiB (LZ4). Default false. */
  compression?: boolean;
  /**
   * The most bytes the keys, values and metadata may take in memory (`stats().memoryBytes`
   * counts them), a whole number of at least 1. Past it, each write evicts keys chosen by
   * `eviction` until the store fits again; an evicted key is removed like a delete (from
   * IndexedDB or the files too, at the next flush; a {@link RedisStore} drops only its local
   * copy), counted in `stats().evictions` and reported as a `change` event with
   * `op: 'evict'`. A single entry larger than the cap is refused (`'ValueTooLarge'`). Default:
   * no cap. `0`, negative or fractional numbers are refused (`RangeError`, `'InvalidOption'`).
   */
  maxMemory?: number;
  /** Which keys go first under `maxMemory`. Default `'lru'`. */
  eviction?: EvictionPolicy;
}

/** Options of `Store.open()`. Unknown or ill-typed options reject with a `TypeError`. */
export interface OpenOptions extends MemoryOptions {
  /**
   * The database name: ASCII letters, digits, `-`, `_`, `.`, 1 to 128 bytes. Default
   * `'default'`. IndexedDB: the database name; files: the directory `path/<name>/`.
   */
  name?: string;
  /** The directory holding databases (Node.js, backend `'fs'`). */
  path?: string;
  /**
   * Default: `'indexeddb'` in browsers and workers, `'fs'` when `path` is given. Node.js has no
   * default without `path`: a store that keeps nothing must say `backend: 'memory'`.
   */
  backend?: BackendName;
  /** See {@link Durability}. */
  durability?: Durability;
  /**
   * IndexedDB only: ask the browser to keep this origin's data when storage runs short
   * (`navigator.storage.persist()`); `stats().storage.persisted` says whether it does.
   * Default `false`.
   */
  persist?: boolean;
}

/**
 * Options of `Store.open()` for a store on a Redis server (Node.js only; needs the optional peer
 * dependency `redis`). `path`, `backend`, `durability` and `persist` do not apply.
 */
export interface RedisOpenOptions extends MemoryOptions {
  /** The server: `redis://host:port/`, `rediss://…` for TLS, a user and password in the URL. */
  redis: string;
  /**
   * The database on the server (as the Rust crate's `Options::db`): its keys are
   * `{tidekv:<name>:<hex(namespace)>}:k:<key>`. Same rules as `OpenOptions.name`; default
   * `'default'`.
   */
  name?: string;
}

/** Browser storage, for an IndexedDB store (`null` in `stats()` for other backends). */
export interface StorageStats {
  /** Whether the browser keeps the data when storage runs short; `null` if unknown. */
  persisted: boolean | null;
  /** `navigator.storage.estimate()` figures in bytes (refreshed after flushes); `null` if unknown. */
  quota: number | null;
  usage: number | null;
}

/** Options of one `set`. */
export interface SetOptions {
  /** Time to live in ms (a finite number above 0). Default: no expiry. */
  ttl?: number;
  /** Tags (non-empty strings); duplicates are removed. Default: none. */
  tags?: string[];
}

/** A key's metadata. Times are ms since the Unix epoch. */
export interface Metadata {
  /** Value size in bytes. */
  size: number;
  createdAt: number;
  updatedAt: number;
  /** The absolute deadline, or `null` without a TTL. */
  expiresAt: number | null;
  /** Sorted and unique. */
  tags: string[];
  kind: ValueKind;
  /** Whether the value is stored compressed. */
  compressed: boolean;
  /** Size of the value as stored (the compressed size when `compressed`), in bytes. */
  storedSize: number;
}

/** A value with its metadata, from `getWithMetadata`; `T` is the value's type (see `get`). */
export interface Entry<T = Value> {
  value: T;
  metadata: Metadata;
}

/** One entry as `entries()` yields it: `for (const [key, value, metadata] of store.entries())`. */
export type EntryTuple<T = Value> = [key: string, value: T, metadata: Metadata];

/**
 * What `getOrSet` calls on a miss: returns (or resolves with) the value to store. Throwing,
 * rejecting or giving `undefined` stores nothing and rejects every waiting `getOrSet`.
 */
export type Loader<T = Value> = () => T | PromiseLike<T>;

/** What `import()` did. */
export interface ImportReport {
  /** Entries stored. */
  loaded: number;
  /** Entries skipped because their deadline had passed. */
  expired: number;
}

/** One tag and how many live keys carry it. */
export interface TagCount {
  tag: string;
  count: number;
}

/** A store's counters since it was opened. */
export interface Stats {
  sets: number;
  gets: number;
  hits: number;
  misses: number;
  deletes: number;
  expires: number;
  persists: number;
  /** Keys held in memory (an expired key counts until it is swept or read). */
  keys: number;
  valueBytes: number;
  /**
   * Bytes the keyspace holds, as `maxMemory` counts them: each key, value and tag plus a fixed
   * amount of bookkeeping per entry (about 140 bytes).
   */
  memoryBytes: number;
  /** Keys the memory cap evicted. */
  evictions: number;
  /** Bytes waiting for the backend, the batch in flight included. */
  bufferBytes: number;
  bufferSize: number;
  /** `bufferBytes` as a percentage of `bufferSize` (may pass 100 while a backend fails). */
  bufferUtilization: number;
  expired: number;
  expiredLazy: number;
  expiredActive: number;
  sweeps: number;
  tickIntervalMs: number;
  /** Batches the backend committed. */
  flushes: number;
  recordsFlushed: number;
  /** Batches the backend failed; their data stayed buffered. */
  flushFailures: number;
  /** The last backend error, or `null`. */
  lastError: string | null;
  /** Browser storage figures of an IndexedDB store; `null` for other backends. */
  storage: StorageStats | null;
}

/** The Redis side of a {@link RedisStore}'s counters. */
export interface RedisStats {
  /** Whether both connections (data, invalidations) are up now. */
  connected: boolean;
  /** Whether Redis is failing the store now: a lost connection or a failed flush. */
  failing: boolean;
  /** The last connection error, until a connection succeeds again; else `null`. */
  lastError: string | null;
  /** Keys read from Redis (local misses and read-backs for change events). */
  fetched: number;
  /** Keys other clients changed, as Redis reported them. */
  invalidations: number;
  /** Times every local copy was dropped (a reconnect, a flush of the Redis database). */
  resets: number;
}

/** A {@link RedisStore}'s counters. */
export interface RedisStoreStats extends Stats {
  redis: RedisStats;
}

/** What `compact()` did. */
export interface CompactReport {
  bytesBefore: number;
  bytesAfter: number;
  recordsBefore: number;
  recordsAfter: number;
  recordsDropped: number;
}

/** The `code` of every error tidekv throws or rejects with. */
export type ErrorCode =
  | 'InvalidType'
  | 'InvalidValue'
  | 'InvalidKey'
  | 'ValueTooLarge'
  | 'InvalidTtl'
  | 'InvalidName'
  | 'InvalidOption'
  | 'Closed'
  | 'Io'
  | 'Corrupt'
  | 'Locked'
  | 'Backend'
  | 'ListenerError'
  | 'NotInitialized';

/**
 * An error from tidekv: a `TypeError` for wrong types, a `RangeError` for out-of-range
 * values, an `Error` otherwise, always with a `code`.
 */
export interface TidekvError extends Error {
  code: ErrorCode;
}


/**
 * What happened to a key: a set (or TTL change), a delete that removed a live key, an expiry,
 * or an eviction by the memory cap (`maxMemory`).
 */
export type ChangeOp = 'set' | 'delete' | 'expire' | 'evict';

/** What a change listener hears about. */
export interface ChangeEvent {
  key: string;
  /** `''` for the default namespace. */
  namespace: string;
  /** See {@link ChangeOp}. */
  op: ChangeOp;
  /**
   * `true` when another tab, worker or (for a {@link RedisStore}) another client of the Redis
   * server made the change; `false` for this store's own calls.
   */
  remote: boolean;
}

/** Called with every change, in the order the changes happened (a reload is not a change). */
export type ChangeListener = (event: ChangeEvent) => void;

/**
 * Called with every key removed by expiry (lazily or by a sweep): the same event object a
 * `change` listener gets for it, with `op: 'expire'`.
 */
export type ExpireListener = (event: ChangeEvent & { op: 'expire' }) => void;

/**
 * Called with every failed flush (the data stays buffered and is retried with backoff) and
 * every exception thrown by a `change` or `expire` listener (code `'ListenerError'`, the thrown value as
 * `cause`). With no `error` listener, these go to `console.warn` instead.
 */
export type ErrorListener = (error: TidekvError) => void;

/**
 * A tidekv store. Reads and writes are synchronous (served from memory; writes are buffered);
 * `flush`, `compact` and `close` return promises. Ticks (flushes, expiry sweeps) come from one
 * timer per JS realm: unref'ed in Node.js, where pending data is also flushed at `beforeExit`;
 * in browsers a flush also starts when the page is hidden and on `pagehide`.
 */
/**
 * The events a store emits: `'change'` (every set, delete, expiry and eviction, `remote` for
 * another tab's or process's), `'expire'` (expiries alone, the same event object) and
 * `'error'` (a background failure). `off` removes a listener `on` added.
 */
export interface StoreEvents {
  on(event: 'change', listener: ChangeListener): void;
  on(event: 'expire', listener: ExpireListener): void;
  on(event: 'error', listener: ErrorListener): void;
  off(event: 'change', listener: ChangeListener): void;
  off(event: 'expire', listener: ExpireListener): void;
  off(event: 'error', listener: ErrorListener): void;
}

/** A store has every method of {@link StoreEvents}. */
export interface Store extends StoreEvents {}

export class Store {
  private constructor();
  /**
   * Loads the wasm (browsers; a no-op in Node.js, where it loads with the module), once: later
   * calls get the same promise, and after a failure (code `'Backend'`) the next call tries
   * again. `Store.open()` calls it itself; call it before `Store.memory()`. `wasm` overrides
   * where the wasm comes from: a URL (string or `URL`), a `Response`, its bytes or a
   * `WebAssembly.Module`; by default the file `web/tidekv_bg.wasm` beside the package's module.
   */
  static init(wasm?: unknown): Promise<void>;
  /**
   * Opens a store and loads every live record into memory. In Node.js, give `path` (files
   * under `path/<name>/`) or `backend: 'memory'`; neither rejects with a `TypeError`.
   */
  static open(options?: OpenOptions): Promise<Store>;
  /**
   * Node.js: opens a store on a Redis server, which stays the source of truth (nothing is loaded;
   * reads return promises). Rejects with code `'Backend'` naming the cause when the server
   * cannot be reached or the `redis` package is not installed.
   */
  static open(options: RedisOpenOptions): Promise<RedisStore>;
  /**
   * A store that keeps nothing after it is closed. Synchronous: in browsers the wasm must be
   * loaded first (`await Store.init()` or any `Store.open()`), else it throws code
   * `'NotInitialized'`.
   */
  static memory(options?: MemoryOptions): Store;
  /**
   * Stores `value`, replacing the whole entry (value, TTL, tags): a `Uint8Array` as bytes, a
   * `string` as text, anything else as JSON — interfaces and class instances included (their
   * own enumerable properties). Throws and stores nothing on bad input (a function, a
   * `BigInt`, a `Date`: see {@link Serializable}).
   */
  set<T>(key: string, value: T & Serializable<T>, options?: SetOptions): void;
  /**
   * The value as stored, or `undefined` if there is none or it expired. `T` names the type you
   * stored (`get<User>('u')`); it is not checked at run time.
   */
  get<T = Value>(key: string): T | undefined;
  getWithMetadata<T = Value>(key: string): Entry<T> | undefined;
  has(key: string): boolean;
  /** `true` if the key held a live value. */
  delete(key: string): boolean;
  /**
   * Stores many entries as one change: all or nothing. Every entry is checked first; one bad
   * entry throws (its message names the entry's index) and nothing is stored. Readers see none
   * or all of it, and it reaches the backend in one flush — one IndexedDB transaction, one
   * log frame — so a crash keeps all of it or none.
   */
  setMany(entries: ReadonlyArray<readonly [key: string, value: Storable, options?: SetOptions]>): void;
  /** Removes many keys as one change (all or nothing, as `setMany`); returns how many held a live value. */
  deleteMany(keys: readonly string[]): number;
  /** Ms until the key expires, or `undefined` without a TTL or key. */
  ttl(key: string): number | undefined;
  /** Gives a live key a TTL in ms, keeping value and tags; `true` if the key exists. */
  expire(key: string, ttl: number): boolean;
  /** Removes a key's TTL; `true` if the key exists. */
  persist(key: string): boolean;
  /** Live keys starting with `prefix` (default: all), sorted. */
  keys(prefix?: string): string[];
  /** Live keys carrying every one of `tags`, sorted. */
  queryByTags(tags: string[]): string[];
  listTags(): TagCount[];
  /**
   * The value under `key` if it is live; else runs `loader` — once, however many calls miss
   * the key while it runs: they all get the same promise — stores its value with `options`
   * and resolves with it (as `get` would return it). A loader that throws or rejects rejects
   * every waiting call with what it threw; one that gives `undefined` rejects them with a
   * `TypeError`; nothing is stored then. A bad key or bad options reject as `set` throws,
   * before the loader runs.
   */
  getOrSet<T extends Storable = Value>(key: string, loader: Loader<T>, options?: SetOptions): Promise<T>;
  /**
   * The live entries whose key starts with `prefix` (default: all), in no particular order,
   * walked 256 keys at a time: little memory whatever the store's size, and writes may go on
   * meanwhile (a key live for the whole walk comes exactly once). Not counted as reads.
   */
  entries<T = Value>(prefix?: string): IterableIterator<EntryTuple<T>>;
  /** Live keys in this handle's namespace. */
  readonly size: number;
  /**
   * Removes every key of this handle's namespace as one change (readers see all or none; it
   * reaches the backend in one flush, durable at the next flush); returns how many were live.
   */
  clear(): number;
  /**
   * Every live entry of every namespace, whichever handle it is called on, in the JSON-lines
   * format of `tidekv dump` (one line per entry; the value as text when it is UTF-8, else
   * base64; the deadline in ms since the epoch or `null`).
   */
  export(): Promise<string>;
  /**
   * Loads a dump (`export()`'s or `tidekv dump`'s) into the namespaces its lines name, all or
   * nothing: a bad line (a truncated last line included) rejects with a `RangeError` naming the
   * line, and nothing is imported. Deadlines are kept; entries already expired are skipped.
   */
  import(text: string): Promise<ImportReport>;
  /** A handle to namespace `name` of the same store. */
  namespace(name: string): Store;
  /** Removes every expired key now; returns how many. */
  sweepExpired(): number;
  stats(): Stats;
  /** Resolves once everything written before the call is committed by the backend. */
  flush(): Promise<void>;
  /** Flushes, then rewrites the backend's data to hold only live keys. */
  compact(): Promise<CompactReport>;
  /**
   * Flushes, stops the timers and releases the backend; later calls throw code `'Closed'`.
   * Call it on the store `Store.open()` returned: on a namespace handle it rejects with a
   * `TypeError` (code `'InvalidType'`) and closes nothing.
   */
  close(): Promise<void>;
  /** Frees this handle's wasm memory (the store itself stays open until `close()`). */
  free(): void;
}

/**
 * A store on a Redis server (Node.js), from `Store.open({ redis, name })`: a write-back cache in
 * front of Redis with a coherent local tier. Writes are synchronous and buffered (flushed as one
 * `MULTI`/`EXEC`, atomic per namespace); a read is served from memory when the key is there and
 * asked from Redis (and kept) when not, so reads — and `delete`, `expire`, `persist`, which must
 * know whether the key exists — return promises. A read that needs Redis while it is down
 * rejects with code `'Backend'`; writes stay buffered and are retried with backoff. Another
 * client's flushed write replaces the local copy (`change` events with `remote: true`).
 */
export interface RedisStore extends StoreEvents {
  /** Stores `value`, replacing the whole entry (as `Store.set`); buffered. Throws and stores nothing on bad input. */
  set<T>(key: string, value: T & Serializable<T>, options?: SetOptions): void;
  /** Stores many entries as one change: all or nothing, and one transaction in Redis. */
  setMany(entries: ReadonlyArray<readonly [key: string, value: Storable, options?: SetOptions]>): void;
  /** The value as stored, or `undefined` if there is none or it expired. */
  get<T = Value>(key: string): Promise<T | undefined>;
  getWithMetadata<T = Value>(key: string): Promise<Entry<T> | undefined>;
  has(key: string): Promise<boolean>;
  /** `true` if the key held a live value. */
  delete(key: string): Promise<boolean>;
  /** Removes many keys as one change; resolves with how many held a live value. */
  deleteMany(keys: readonly string[]): Promise<number>;
  /** Ms until the key expires, or `undefined` without a TTL or key. */
  ttl(key: string): Promise<number | undefined>;
  /** Gives a live key a TTL in ms, keeping value and tags; `true` if the key exists. */
  expire(key: string, ttl: number): Promise<boolean>;
  /** Removes a key's TTL; `true` if the key exists. */
  persist(key: string): Promise<boolean>;
  /** Live keys starting with `prefix` (default: all), sorted: Redis's and the unflushed ones. */
  keys(prefix?: string): Promise<string[]>;
  /** Live keys carrying every one of `tags`, sorted; never an expired key. */
  queryByTags(tags: string[]): Promise<string[]>;
  listTags(): Promise<TagCount[]>;
  /**
   * As `Store.getOrSet`, with the key looked up in memory, then in Redis. The loader runs once
   * per process: two processes that miss at once each run theirs.
   */
  getOrSet<T extends Storable = Value>(key: string, loader: Loader<T>, options?: SetOptions): Promise<T>;
  /**
   * The live entries whose key starts with `prefix` (default: all), sorted by key: what
   * `keys(prefix)` lists, read 256 at a time. Use `for await`.
   */
  entries<T = Value>(prefix?: string): AsyncIterableIterator<EntryTuple<T>>;
  /** Live keys in this handle's namespace (one `SCAN`): a method, since it asks Redis. */
  size(): Promise<number>;
  /**
   * Removes every key of this handle's namespace (all that `keys()` lists) as one change, one
   * transaction in Redis; resolves with how many were live.
   */
  clear(): Promise<number>;
  /** A handle to namespace `name` of the same store. */
  namespace(name: string): RedisStore;
  /** Removes every expired local copy now; returns how many (Redis expires keys itself). */
  sweepExpired(): number;
  stats(): RedisStoreStats;
  /** Resolves once Redis acknowledged everything written before the call. */
  flush(): Promise<void>;
  /**
   * Flushes, then closes both connections; later calls fail with code `'Closed'`. On a
   * namespace handle it rejects with a `TypeError` (code `'InvalidType'`) and closes nothing.
   */
  close(): Promise<void>;
  /** Frees this handle's wasm memory (the store itself stays open until `close()`). */
  free(): void;
}
