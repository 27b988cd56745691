-- tidekv: one bounded step of cleaning the deadline index (docs/REDIS.md, "Expiry").
-- KEYS = [H:tags, H:d]; ARGV = [H, limit]. Returns the number of expired keys whose tags
-- were removed.
local h, tags_key, index_key = ARGV[1], KEYS[1], KEYS[2]
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', index_key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local reaped = 0
for _, key in ipairs(due) do
  if redis.call('EXISTS', h .. ':k:' .. key) == 0 then
    local old = redis.call('HGET', tags_key, key)
    if old then
      local pos = 1
      while pos <= #old do
        local colon = string.find(old, ':', pos, true)
        local len = tonumber(string.sub(old, pos, colon - 1))
        redis.call('SREM', h .. ':t:' .. string.sub(old, colon + 1, colon + len), key)
        pos = colon + len + 1
      end
      redis.call('HDEL', tags_key, key)
    end
    redis.call('ZREM', index_key, key)
    reaped = reaped + 1
  end
end
return reaped
