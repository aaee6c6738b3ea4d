-- Release the exclusive lock KEYS[1] (a mutex, or an election) if ARGV[1]
-- holds it, or take ARGV[1] out of its queue. ARGV[2] is the caller's
-- channel for grants.
--
-- A release passes the lock to the first live waiter in the same step (new
-- owner, new token, new lease) and tells that waiter's client; a waiter of
-- the caller's own client is named in the reply instead.
-- Returns {code, handed, token, id}: code 1 released, 3 left the queue, 0
-- neither held nor queued (nothing touched); handed 1 if the lock went to a
-- waiter; token and id name the caller's own waiter that got it, if one did.
local key, id = KEYS[1], ARGV[1]
if not mayexpire(key) then
  return noexpire(key)
end
local cur = redis.call('HMGET', key, 'o', 't', 'qh', 'k', 'nc')
if cur[1] == id then
  local next, token, mine
  if cur[3] then -- someone waits
    next, token, mine = grant(key, cur[2], ARGV[2], cur[4])
  end
  if not next then
    if cur[5] then
      redis.call('PUBLISH', cur[5], '0') -- an election without a leader
    end
    free(key, cur[2])
    return {1, 0}
  end
  if mine then
    return {1, 1, token, next}
  end
  return {1, 1}
end
local rec = redis.call('HGET', key, 'w' .. id)
if rec then
  drop(key, id, (parse(rec)))
  return {3, 0}
end
return {0, 0}
