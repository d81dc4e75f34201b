-- ARGV: prefix, reporter, kind, val, now, target, suspect_deadline
local now = num(ARGV[5])
local rk = rec_key(ARGV[2])
local f = redis.call('HMGET', rk, 'lease', 'lease_exp', 'last_ts', 'nbrs', 'deadline')
if not f[3] then return 'unknown_peer' end
if num(f[5]) <= now then return 'expired' end
local bad = check_auth(f[1], f[2], f[3], ARGV[3], ARGV[4], now)
if bad then return bad end
if ARGV[3] == 'sig' then redis.call('HSET', rk, 'last_ts', ARGV[4]) end
local tk = rec_key(ARGV[6])
local t = redis.call('HMGET', tk, 'deadline', 'nbrs')
if not t[1] or num(t[1]) <= now then return 'gone' end
local function lists(nbrs, id) return nbrs and string.find(nbrs, id, 1, true) ~= nil end
if not lists(f[4], ARGV[6]) and not lists(t[2], ARGV[2]) then return 'not_a_neighbour' end
local d = t[1]
if num(ARGV[7]) < num(d) then d = ARGV[7] end
redis.call('HSET', tk, 'deadline', d)
redis.call('ZADD', p .. 'deadline', d, ARGV[6])
redis.call('ZREM', p .. 'cand', ARGV[6])
return 'suspected'
