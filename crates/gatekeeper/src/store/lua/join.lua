-- ARGV: prefix, id, info, signed_ts, lease_hash, lease_exp, deadline, cand_score
local id = ARGV[2]
local rk = rec_key(id)
local last = redis.call('HGET', rk, 'last_ts')
if not last then last = redis.call('GET', tomb_key(id)) end
if last and num(ARGV[4]) <= num(last) then return 'replayed' end
redis.call('HSET', rk, 'info', ARGV[3], 'nbrs', '', 'lease', ARGV[5], 'lease_exp', ARGV[6],
  'last_ts', ARGV[4], 'deadline', ARGV[7])
redis.call('ZADD', p .. 'deadline', ARGV[7], id)
redis.call('ZADD', p .. 'cand', ARGV[8], id)
redis.call('ZADD', p .. 'ids', 0, id)
redis.call('DEL', tomb_key(id))
return 'ok'
