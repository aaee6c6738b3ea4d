-- Take the lock KEYS[1] for ARGV[1] (an owner id), or join its queue.
-- ARGV[2] TTL in ms, ARGV[3] holder text, ARGV[4] '0' not to join the queue
-- if the lock is held, '1' to join it, '2' to join it when an earlier
-- attempt with this id may have joined already; ARGV[5] the caller's
-- channel for grants.
--
-- Returns {1, token} taken; {0, ms left of the holder's lease} held (not
-- queued); {2, ms left, 1 if first in the queue else 0} queued. Calling it
-- again with the same id is safe: a lock already ours is renewed and
-- returned, a queue entry already there is renewed.
local key, id, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2])
if not mayexpire(key) then
  return noexpire(key)
end
local cur = redis.call('HMGET', key, 'o', 't')
if not cur[1] then
  -- Free (missing, or a token tombstone), so nobody waits either.
  local token = nexttoken(cur[2])
  redis.call('HSET', key, 'o', id, 't', fmt(token), 'h', ARGV[3], 'a', fmt(NOWUS))
  redis.call('PEXPIRE', key, ttl)
  return {1, token}
end
if cur[1] == id then
  redis.call('PEXPIRE', key, ttl)
  return {1, tonumber(cur[2])}
end
local left = redis.call('PTTL', key)
if ARGV[4] == '0' then
  return {0, left}
end
if ARGV[4] == '2' and redis.call('HEXISTS', key, 'e' .. id) == 1 then
  redis.call('HSET', key, 'e' .. id, fmt(NOW + ttl))
  return {2, left, head(key) == id and 1 or 0}
end
local n = redis.call('HINCRBY', key, 'qt', 1)
redis.call('HSETNX', key, 'qh', n)
local chan = ARGV[5]
redis.call('HSET', key, 'q' .. n, id, 'e' .. id, fmt(NOW + ttl),
  'w' .. id, string.format('%d %d %d ', n, ttl, #chan) .. chan .. ARGV[3])
local first = redis.call('HINCRBY', key, 'qn', 1) == 1
return {2, left, first and 1 or 0}
