-- lib.lua is put in front of every other script (scripts.go joins them), so
-- the rules about a lock's state live in one place.
--
-- A lock is one hash, whose own TTL is the holder's lease: when the holder
-- stops renewing, Redis drops the lock, queue and all. Holder fields:
--   o  owner id          t  last fencing token issued (outlives its holder
--   h  holder text          as a tombstone while it is ahead of the clock)
--   a  taken at (µs)
-- Queue fields, present while someone waits:
--   qh  first position that may be in use     qt  last position given out
--   qn  entries in the queue
--   q<n>   id of the waiter at position n
--   w<id>  "<n> <ttl ms> <length of channel> <channel><holder text>"
--   e<id>  end of that waiter's lease (server ms): a crashed or cut-off
--          waiter is skipped once it has passed
-- All times are the server's (TIME), never a client's.
local TIME = redis.call('TIME')
local NOW = tonumber(TIME[1]) * 1000 + math.floor(tonumber(TIME[2]) / 1000)
local NOWUS = tonumber(TIME[1]) * 1000000 + tonumber(TIME[2])

-- Numbers beyond 2^31 must not reach Redis in exponent notation.
local function fmt(v)
  return string.format('%.0f', v)
end

-- mayexpire reports whether the user may set the expiry of key. Scripts
-- that write check it before anything is written: a lock written without
-- its TTL would never go away.
local function mayexpire(key)
  return not redis.acl_check_cmd or redis.acl_check_cmd('PEXPIRE', key, '1')
end

local function noexpire(key)
  return redis.error_reply('NOPERM renewlock: this user may not run PEXPIRE on ' .. key)
end

local function parse(rec)
  local n, ttl, len, rest = string.match(rec, '^(%d+) (%d+) (%d+) (.*)$')
  len = tonumber(len)
  return tonumber(n), tonumber(ttl), string.sub(rest, 1, len), string.sub(rest, len + 1)
end

-- drop removes waiter id, at position n, from the queue of key.
local function drop(key, id, n)
  redis.call('HDEL', key, 'q' .. n, 'w' .. id, 'e' .. id)
  if redis.call('HINCRBY', key, 'qn', -1) <= 0 then
    redis.call('HDEL', key, 'qh', 'qt', 'qn')
  end
end

-- head returns the first waiter of key whose lease has not ended (id,
-- position, record), dropping the ended ones before it. nil if nobody
-- waits.
local function head(key)
  local q = redis.call('HMGET', key, 'qh', 'qt')
  local first, last = tonumber(q[1]), tonumber(q[2])
  if not first then
    return nil
  end
  for n = first, last do
    local id = redis.call('HGET', key, 'q' .. n)
    if id then
      local w = redis.call('HMGET', key, 'e' .. id, 'w' .. id)
      if w[2] and (tonumber(w[1]) or 0) > NOW then
        if n ~= first then
          redis.call('HSET', key, 'qh', n)
        end
        return id, n, w[2]
      end
      drop(key, id, n)
      if redis.call('HEXISTS', key, 'qn') == 0 then
        return nil
      end
    end
  end
  redis.call('HDEL', key, 'qh', 'qt', 'qn')
  return nil
end

-- nexttoken returns a token above the last one, t, and never below the
-- server clock in µs: so tokens keep rising after a release, an expiry and
-- a restart that lost every key.
local function nexttoken(t)
  t = tonumber(t)
  if t and t >= NOWUS then
    return t + 1
  end
  return NOWUS
end

-- grant makes the first live waiter of key the holder, with a new token
-- and a lease of its TTL, and tells its client on that client's channel,
-- unless that channel is mine (the caller's: it hands the lock over
-- itself). t is the last token. Returns id, token and whether the waiter
-- is mine; nil if nobody waits.
local function grant(key, t, mine)
  local id, n, rec = head(key)
  if not id then
    return nil
  end
  local _, ttl, chan, holder = parse(rec)
  drop(key, id, n)
  local token = nexttoken(t)
  redis.call('HSET', key, 'o', id, 't', fmt(token), 'h', holder, 'a', fmt(NOWUS))
  redis.call('PEXPIRE', key, ttl)
  if chan == mine then
    return id, token, true
  end
  redis.call('PUBLISH', chan, id .. ' ' .. fmt(token))
  return id, token, false
end

-- free ends a holder's tenure when nobody waits: the key goes, or keeps
-- its token t as a tombstone while t is ahead of the clock (several
-- acquisitions within one µs), until the clock has passed it.
local function free(key, t)
  t = tonumber(t)
  if not t or t < NOWUS then
    redis.call('DEL', key)
  else
    redis.call('HDEL', key, 'o', 'h', 'a')
    redis.call('PEXPIRE', key, fmt(math.floor((t - NOWUS) / 1000) + 1000))
  end
end
