-- ARGV: prefix, id, kind, val, now, info, nbrs, deadline, cand_score, new_lease_hash,
--       new_lease_exp, accept_late, tomb_ttl_ms, ts, addrs
local id = ARGV[2]
local rk = rec_key(id)
local now = num(ARGV[5])
local f = redis.call('HMGET', rk, 'lease', 'lease_exp', 'last_ts', 'deadline', 'lst', 'addrs')
if not f[4] then return 'unknown_peer' end
local bad = check_auth(f[1], f[2], f[3], ARGV[3], ARGV[4], now)
if bad then return bad end
if num(ARGV[14]) <= num(f[5]) then return 'replayed' end
if ARGV[3] ~= 'sig' and f[6] ~= ARGV[15] then return 'address_unsigned' end
if num(f[4]) <= now and ARGV[12] ~= '1' then
  remove_peer(id)
  tombstone(id, f[3], ARGV[13])
  return 'expired'
end
redis.call('HSET', rk, 'info', ARGV[6], 'nbrs', ARGV[7], 'deadline', ARGV[8], 'lst', ARGV[14],
  'addrs', ARGV[15], 'rin', '')
if ARGV[3] == 'sig' then redis.call('HSET', rk, 'last_ts', ARGV[4]) end
if ARGV[10] ~= '' then redis.call('HSET', rk, 'lease', ARGV[10], 'lease_exp', ARGV[11]) end
redis.call('ZADD', p .. 'deadline', ARGV[8], id)
-- An empty score: the peer cannot be dialled, so it is never offered as a candidate.
if ARGV[9] ~= '' then redis.call('ZADD', p .. 'cand', ARGV[9], id) else redis.call('ZREM', p .. 'cand', id) end
return 'ok'
