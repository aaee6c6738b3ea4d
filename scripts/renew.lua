-- Extend the leases KEYS[i] still owned by ARGV[2i-1] to ARGV[2i] ms.
-- Returns one integer per key: 1 renewed, 0 not ours (another owner, or the
-- key is gone). A lapsed lock is never re-created.
local res = {}
for i, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'o') == ARGV[2 * i - 1] then
    redis.call('PEXPIRE', key, ARGV[2 * i])
    res[i] = 1
  else
    res[i] = 0
  end
end
return res
