-- Take the exclusive lock KEYS[1] (a mutex, or an election) for ARGV[1]
-- (an owner id), or join its queue. ARGV[2] TTL in ms, ARGV[3] holder text,
-- ARGV[4] '0' not to join the queue if the lock is held, '1' to join it,
-- '2' to join it when an earlier attempt with this id may have joined
-- already; ARGV[5] the caller's channel for grants; ARGV[6] the kind: ''
-- for a mutex, 'e' for an election, whose leader's value is ARGV[7] and
-- whose changes are announced on channel ARGV[8].
--
-- Returns {1, token} taken; {0, ms left of the holder's lease} held (not
-- queued); {2, ms left, 1 if first in the queue else 0} queued. Calling it
-- again with the same id is safe: a lock already ours is renewed and
-- returned, a queue entry already there is renewed.
local key, id, ttl, kind = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[6]
if not mayexpire(key) then
  return noexpire(key)
end
local cur = redis.call('HMGET', key, 'o', 't', 'k')
if not cur[1] then
  if cur[3] and cur[3] ~= kind then -- a shared lock with holders
    return wrongkind(key, cur[3], kind)
  end
  -- Free (missing, or a token tombstone), so nobody waits either.
  local token = nexttoken(cur[2])
  redis.call('HSET', key, 'o', id, 't', fmt(token), 'h', ARGV[3], 'a', fmt(NOWUS))
  if kind == 'e' then
    redis.call('HSET', key, 'k', 'e', 'v', ARGV[7], 'nc', ARGV[8])
    redis.call('PUBLISH', ARGV[8], fmt(token))
  end
  redis.call('PEXPIRE', key, ttl)
  return {1, token}
end
if (cur[3] or '') ~= kind then
  return wrongkind(key, cur[3], kind)
end
if cur[1] == id then
  redis.call('PEXPIRE', key, ttl)
  return {1, tonumber(cur[2])}
end
local left = redis.call('PTTL', key)
if ARGV[4] == '0' then
  return {0, left}
end
if ARGV[4] == '2' and redis.call('HGET', key, 'e' .. id) then
  redis.call('HSET', key, 'e' .. id, fmt(NOW + ttl))
  return {2, left, head(key) == id and 1 or 0}
end
local first = join(key, id, ttl, 'x', ARGV[5], ARGV[3], ARGV[7])
return {2, left, first and 1 or 0}
