-- Release the lock KEYS[1] if ARGV[1] holds it, or take ARGV[1] out of its
-- queue. ARGV[2] is the caller's channel for grants.
--
-- A release passes the lock to the first live waiter in the same step (new
-- owner, new token, new lease) and tells that waiter's client; a waiter of
-- the caller's own client is told in the reply instead.
-- Returns {1, 1} released to a waiter of another client; {1, 0} released,
-- nobody waits; {2, token, id} released to the caller's own waiter id;
-- {3, 0} left the queue; {0, 0} neither held nor queued (nothing touched).
local key, id = KEYS[1], ARGV[1]
if not mayexpire(key) then
  return noexpire(key)
end
local cur = redis.call('HMGET', key, 'o', 't', 'qh')
if cur[1] == id then
  local next, token, mine
  if cur[3] then -- someone waits
    next, token, mine = grant(key, cur[2], ARGV[2])
  end
  if not next then
    free(key, cur[2])
    return {1, 0}
  end
  if mine then
    return {2, token, next}
  end
  return {1, 1}
end
local rec = redis.call('HGET', key, 'w' .. id)
if rec then
  drop(key, id, (parse(rec)))
  return {3, 0}
end
return {0, 0}
