// Compiled (never run) by types.test.mjs with `tsc --strict` against the installed package:
// the public types accept what the docs promise and reject misuse (@ts-expect-error lines).
import { Store } from 'tidekv';
import type { ChangeEvent, ChangeOp, CompactReport, Entry, EntryTuple, EvictionPolicy, ImportReport, Loader, Metadata, OpenOptions, RedisOpenOptions, RedisStats, RedisStore, Stats, StorageStats, TagCount, TidekvError, Value } from 'tidekv';

export async function usage(): Promise<void> {
  const options: OpenOptions = { name: 'app', path: './data', backend: 'fs', durability: 'fsync', bufferSize: 1024, flushInterval: 100, compression: true, maxValueSize: 10 };
  const store: Store = await Store.open(options);
  store.set('bytes', new Uint8Array([1]), { ttl: 1000, tags: ['a'] });
  store.set('text', 'hello');
  store.set('json', { nested: [1, 'two', null, { ok: true }] });
  store.setMany([['a', 'text'], ['b', new Uint8Array([2]), { ttl: 5 }], ['c', { n: 1 }, { tags: ['t'] }]]);
  const removed: number = store.deleteMany(['a', 'b']);
  const value: Value | undefined = store.get('text');
  const entry: Entry | undefined = store.getWithMetadata('json');
  const meta: Metadata | undefined = entry?.metadata;
  const expiresAt: number | null | undefined = meta?.expiresAt;
  const ttl: number | undefined = store.ttl('bytes');
  const keys: string[] = store.keys('pre');
  const tagged: string[] = store.queryByTags(['a']);
  const counts: number[] = store.listTags().map((t) => t.count);
  const users: Store = store.namespace('users');
  const stats: Stats = users.stats();
  const lastError: string | null = stats.lastError;
  const storage: StorageStats | null = stats.storage;
  const persisted: boolean | null | undefined = storage?.persisted;
  await Store.open({ name: 'kept', persist: true });
  store.on('expire', (e: ChangeEvent) => void [e.key, e.namespace, e.op === 'expire', e.remote]);
  store.on('expire', ({ key, op }) => void [key.length, op satisfies 'expire']);
  store.on('error', (e: TidekvError) => void e.code);
  const onChange = (e: ChangeEvent) => void [e.key, e.namespace, e.op === 'set', e.remote];
  store.on('change', onChange);
  store.off('change', onChange);
  await store.flush();
  const report: CompactReport = await store.compact();
  await store.close();
  const memory = Store.memory({ bufferSize: 10 });
  // @ts-expect-error: keys are strings
  memory.set(1, 'v');
  // @ts-expect-error: unknown option
  await Store.open({ bufferSise: 1 });
  // @ts-expect-error: not a backend
  await Store.open({ backend: 'redis' });
  // @ts-expect-error: ttl is a number of ms
  memory.set('k', 'v', { ttl: '10s' });
  // @ts-expect-error: functions are not values
  memory.set('k', () => 1);
  // @ts-expect-error: setMany entries are [key, value, options?] tuples
  memory.setMany([{ key: 'k', value: 'v' }]);
  // @ts-expect-error: deleteMany takes keys
  memory.deleteMany([1]);
  // @ts-expect-error: unknown event
  memory.on('expired', () => {});
  // @ts-expect-error: a change listener gets one event object
  memory.on('change', (key: string, namespace: string) => void [key, namespace]);
  // @ts-expect-error: so does an expire listener, the same one
  memory.on('expire', (key: string, namespace: string) => void [key, namespace]);
  void [value, expiresAt, ttl, keys, tagged, counts, lastError, report, removed, persisted];
}

export async function cacheUsage(): Promise<void> {
  const policy: EvictionPolicy = 'nearest-expiry';
  const store = await Store.open({ name: 'cache', maxMemory: 64 * 1024 * 1024, eviction: policy });
  const capped = Store.memory({ maxMemory: 1024, eviction: 'lru' });
  const { memoryBytes, evictions }: Stats = capped.stats();
  const op: ChangeOp = 'evict';
  store.on('change', (e: ChangeEvent) => void (e.op === op));
  const loader: Loader = async () => ({ name: 'Ada' });
  const loaded: Value = await store.getOrSet('user:1', loader, { ttl: 60_000, tags: ['users'] });
  const sync: Value = await store.getOrSet('n', () => 1);
  for (const [key, value, metadata] of store.entries('user:')) void [key.length, value, metadata.expiresAt];
  const first: EntryTuple | undefined = store.entries().next().value ?? undefined;
  const size: number = store.size;
  const cleared: number = store.clear();
  const dump: string = await store.export();
  const imported: ImportReport = await store.import(dump);
  const counts: number = imported.loaded + imported.expired;
  // @ts-expect-error: size is a read-only property
  store.size = 3;
  // @ts-expect-error: not a policy
  Store.memory({ eviction: 'fifo' });
  // @ts-expect-error: maxMemory is a number of bytes
  Store.memory({ maxMemory: '64mb' });
  // @ts-expect-error: a loader takes no arguments and returns a value
  await store.getOrSet('k', (key: string) => key);
  // @ts-expect-error: import takes the dump text
  await store.import([dump]);

  const redis: RedisStore = await Store.open({ redis: 'redis://127.0.0.1:6379/', maxMemory: 1 << 20 });
  const fromRedis: Value = await redis.getOrSet('k', async () => 'v');
  for await (const [key, value, metadata] of redis.entries()) void [key, value, metadata.tags];
  const redisSize: number = await redis.size();
  const redisCleared: number = await redis.clear();
  // @ts-expect-error: a Redis store's entries are async
  for (const entry of redis.entries()) void entry;
  void [memoryBytes, evictions, loaded, sync, first, size, cleared, counts, fromRedis, redisSize, redisCleared];
}

export async function redisUsage(): Promise<void> {
  const options: RedisOpenOptions = { redis: 'redis://127.0.0.1:6379/', name: 'app', bufferSize: 1024, flushInterval: 50 };
  const store: RedisStore = await Store.open(options);
  store.set('k', 'v', { ttl: 1000, tags: ['a'] });
  store.setMany([['a', 1], ['b', 'two', { tags: ['t'] }]]);
  const value: Value | undefined = await store.get('k');
  const entry: Entry | undefined = await store.getWithMetadata('k');
  const has: boolean = await store.has('k');
  const deleted: boolean = await store.delete('k');
  const removed: number = await store.deleteMany(['a', 'b']);
  const ttl: number | undefined = await store.ttl('k');
  const expiring: boolean = await store.expire('k', 10);
  const persisted: boolean = await store.persist('k');
  const keys: string[] = await store.keys('pre');
  const tagged: string[] = await store.queryByTags(['a']);
  const tags: TagCount[] = await store.listTags();
  const users: RedisStore = store.namespace('users');
  const redis: RedisStats = users.stats().redis;
  const failing: boolean = redis.failing;
  const stats: Stats = store.stats();
  store.on('change', (e: ChangeEvent) => void e.remote);
  store.on('error', (e: TidekvError) => void e.code);
  await store.flush();
  await store.close();
  // @ts-expect-error: a Redis store's reads are promises
  const sync: Value | undefined = store.get('k');
  // @ts-expect-error: a Redis store is not a file store
  await Store.open({ redis: 'redis://h/', path: './data' });
  // @ts-expect-error: the URL is a string
  await Store.open({ redis: 6379 });
  // @ts-expect-error: no compaction on Redis
  await store.compact();
  void [value, entry, has, deleted, removed, ttl, expiring, persisted, keys, tagged, tags, failing, stats, sync];
}

// What an application stores: interfaces and class instances, read back with the type named.
interface User {
  id: number;
  name: string;
  email?: string;
  roles: readonly string[];
  address: { city: string; zip: string | null };
}

class Session {
  constructor(public user: string, public expires: number, private readonly scopes: string[] = []) {}
  isValid(now: number): boolean {
    return now < this.expires && this.scopes.length >= 0;
  }
}

export async function typedUsage(): Promise<void> {
  await Store.init();
  const store = Store.memory();
  const ada: User = { id: 1, name: 'Ada', roles: ['admin'], address: { city: 'London', zip: null } };
  store.set('user:1', ada);
  store.set('users', [ada, ada]);
  store.set('session', new Session('ada', Date.now() + 1000));
  store.set('when', Date.now());
  const user: User | undefined = store.get<User>('user:1');
  const city: string | undefined = user?.address.city;
  const entry = store.getWithMetadata<User>('user:1');
  const name: string | undefined = entry?.value.name;
  const loaded: User = await store.getOrSet<User>('user:2', async () => ({ ...ada, id: 2 }));
  const inferred: User = await store.getOrSet('user:3', (): User => ({ ...ada, id: 3 }));
  for (const [key, value] of store.entries<User>('user:')) void [key, value.roles];
  const untyped: Value | undefined = store.get('user:1');
  store.setMany([['user:4', ada], ['bytes', new Uint8Array(1)], ['session', new Session('b', 1)]]);
  const redis: RedisStore = await Store.open({ redis: 'redis://127.0.0.1:6379/' });
  redis.set('user:1', ada);
  const fromRedis: User | undefined = await redis.get<User>('user:1');
  // @ts-expect-error: a Date would come back as a string: it is refused
  store.set('when', new Date());
  // @ts-expect-error: inside an object too
  store.set('user', { ...ada, created: new Date() });
  // @ts-expect-error: BigInt has no JSON form
  store.set('big', { n: 10n });
  // @ts-expect-error: a Map neither
  store.set('map', new Map<string, number>());
  // @ts-expect-error: undefined is not a value (delete the key instead)
  store.set('gone', undefined);
  // @ts-expect-error: get<User> gives a User or undefined
  const sure: User = store.get<User>('user:1');
  void [city, name, loaded, inferred, untyped, fromRedis, sure];
}
