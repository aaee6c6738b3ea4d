-- lib.lua is put in front of every other script (scripts.go joins them), so
-- the rules about a lock's state live in one place.
--
-- A lock is one hash. The exclusive kinds (a mutex; an election, k = 'e')
-- keep their holder in it, and the hash's own TTL is the holder's lease:
-- when the holder stops renewing, Redis drops the lock, queue and all.
--   o  owner id          t  last fencing token issued (outlives its holder
--   h  holder text          as a tombstone while it is ahead of the clock)
--   a  taken at (µs)     k  kind: absent (mutex), 'e' election, 's'
--   v  the leader's value   semaphore, 'r' read-write lock (shared.lua)
--   nc the election's notification channel
-- Queue fields, present while someone waits:
--   qh  first position that may be in use     qt  last position given out
--   qn  entries in the queue
--   q<n>   id of the waiter at position n
--   w<id>  "<n> <ttl ms> <mode> <length of channel> <length of holder text>
--          <channel><holder text><value>"; mode x: exclusive (a mutex, an
--          election, a writer), s: shared (a permit, a reader)
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

-- extend makes key (which has a TTL) live at least until ms (server time).
local function extend(key, ms)
  redis.call('PEXPIRE', key, fmt(ms - NOW), 'GT')
end

-- parse splits a waiter's record: position, ttl, mode, channel, holder
-- text, value.
local function parse(rec)
  local n, ttl, mode, cl, hl, rest = string.match(rec, '^(%d+) (%d+) (%a) (%d+) (%d+) (.*)$')
  cl, hl = tonumber(cl), tonumber(hl)
  return tonumber(n), tonumber(ttl), mode, string.sub(rest, 1, cl),
    string.sub(rest, cl + 1, cl + hl), string.sub(rest, cl + hl + 1)
end

-- record builds a waiter's record (see parse).
local function record(n, ttl, mode, chan, holder, value)
  return string.format('%d %d %s %d %d ', n, ttl, mode, #chan, #holder) .. chan .. holder .. (value or '')
end

-- join puts waiter id at the end of key's queue, with a lease of ttl ms.
-- Returns whether it is first.
local function join(key, id, ttl, mode, chan, holder, value)
  local n = redis.call('HINCRBY', key, 'qt', 1)
  redis.call('HSETNX', key, 'qh', n)
  redis.call('HSET', key, 'q' .. n, id, 'e' .. id, fmt(NOW + ttl), 'w' .. id, record(n, ttl, mode, chan, holder, value))
  return redis.call('HINCRBY', key, 'qn', 1) == 1
end

-- notify tells a waiter's client on its channel that the waiter now holds
-- the lock. A channel that starts with a NUL byte is a shard channel (a
-- Redis Cluster client: the rest of it is in the key's slot, and SPUBLISH
-- reaches that shard's nodes only); any other is a classic one.
-- A user who may not SPUBLISH there is not refused the release: the
-- waiter then learns of the grant at its next renewal.
local function notify(chan, msg)
  if string.byte(chan, 1) == 0 then
    chan = string.sub(chan, 2)
    if not redis.acl_check_cmd or redis.acl_check_cmd('SPUBLISH', chan, msg) then
      redis.call('SPUBLISH', chan, msg)
    end
  else
    redis.call('PUBLISH', chan, msg)
  end
end

-- kindname names a kind for error messages.
local function kindname(k)
  if k == 'e' then
    return 'an election'
  elseif k == 's' then
    return 'a semaphore'
  elseif k == 'r' then
    return 'a read-write lock'
  end
  return 'a mutex'
end

-- wrongkind is the error for a key of another kind than the caller's.
local function wrongkind(key, is, want)
  return redis.error_reply('WRONGTYPE renewlock: ' .. key .. ' is ' .. kindname(is) .. ', not ' .. kindname(want))
end

-- drop removes waiter id, at position n, from the queue of key.
local function drop(key, id, n)
  redis.call('HDEL', key, 'q' .. n, 'w' .. id, 'e' .. id)
  if redis.call('HINCRBY', key, 'qn', -1) <= 0 then
    redis.call('HDEL', key, 'qh', 'qt', 'qn')
  end
end

-- head returns the first waiter of key whose lease has not ended (id,
-- position, record, end of its lease in ms), dropping the ended ones
-- before it. nil if nobody waits.
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
      local e = tonumber(w[1]) or 0
      if w[2] and e > NOW then
        if n ~= first then
          redis.call('HSET', key, 'qh', n)
        end
        return id, n, w[2], e
      end
      drop(key, id, n)
      if not redis.call('HGET', key, 'qn') then
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

-- grant makes the first live waiter of the exclusive lock key the holder,
-- with a new token, and tells its client on that client's channel, unless
-- that channel is mine (the caller's: it hands the lock over itself). t is
-- the last token, k the kind. An election's new leader takes the waiter's
-- value and is announced on its channel. The lease it gets ends where its
-- place in the queue would have: the waiter's client counts its deadline
-- from the last renewal of that place, and renews the lock from then on;
-- a waiter that died meanwhile holds the lock no longer than its place.
-- Returns id and token of the new holder and whether the waiter is mine;
-- nil if nobody waits.
local function grant(key, t, mine, k)
  local id, n, rec, e = head(key)
  if not id then
    return nil
  end
  local _, _, _, chan, holder, value = parse(rec)
  drop(key, id, n)
  local token = nexttoken(t)
  redis.call('HSET', key, 'o', id, 't', fmt(token), 'h', holder, 'a', fmt(NOWUS))
  redis.call('PEXPIRE', key, fmt(e - NOW))
  if k == 'e' then
    redis.call('HSET', key, 'v', value)
    local nc = redis.call('HGET', key, 'nc')
    if nc then
      redis.call('PUBLISH', nc, fmt(token))
    end
  end
  if chan == mine then
    return id, token, true
  end
  notify(chan, id .. ' ' .. fmt(token))
  return id, token, false
end

-- free ends a lock's last tenure when nobody waits: the key goes, or keeps
-- its token t as a tombstone while t is ahead of the clock (several
-- acquisitions within one µs), until the clock has passed it.
local function free(key, t)
  t = tonumber(t)
  redis.call('DEL', key)
  if t and t >= NOWUS then
    redis.call('HSET', key, 't', fmt(t))
    redis.call('PEXPIRE', key, fmt(math.floor((t - NOWUS) / 1000) + 1000))
  end
end
