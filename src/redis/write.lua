-- tidekv: the tag sets, tag hash and deadline index of one namespace's part of a batch
-- (docs/REDIS.md, "Writes"). Runs inside the batch's MULTI/EXEC, before the records' own
-- SET/DEL, which the client sends itself (so CLIENT TRACKING's NOLOOP applies to them).
-- KEYS = [H:tags, H:d]; ARGV = [H, then five per op: kind ("p" or "d"), key, record (unused,
-- may be ""), deadline or "", encoded tags or ""]. Returns the number of ops applied.
local h, tags_key, index_key = ARGV[1], KEYS[1], KEYS[2]

-- Calls f on each tag of an encoding such as "3:red4:blue".
local function each_tag(encoded, f)
  local pos = 1
  while pos <= #encoded do
    local colon = string.find(encoded, ':', pos, true)
    local len = tonumber(string.sub(encoded, pos, colon - 1))
    f(string.sub(encoded, colon + 1, colon + len))
    pos = colon + len + 1
  end
end

local ops = 0
for i = 2, #ARGV, 5 do
  local kind, key, deadline, tags = ARGV[i], ARGV[i + 1], ARGV[i + 3], ARGV[i + 4]
  local old = redis.call('HGET', tags_key, key)
  if old then
    each_tag(old, function(tag) redis.call('SREM', h .. ':t:' .. tag, key) end)
    redis.call('HDEL', tags_key, key)
  end
  redis.call('ZREM', index_key, key)
  if kind == 'p' then
    if tags ~= '' then
      each_tag(tags, function(tag) redis.call('SADD', h .. ':t:' .. tag, key) end)
      redis.call('HSET', tags_key, key, tags)
      if deadline ~= '' then
        redis.call('ZADD', index_key, deadline, key)
      end
    end
  end
  ops = ops + 1
end
return ops
