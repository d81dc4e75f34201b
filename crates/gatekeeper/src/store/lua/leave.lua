-- ARGV: prefix, id, kind, val, now, tomb_ttl_ms
local id = ARGV[2]
local f = redis.call('HMGET', rec_key(id), 'lease', 'lease_exp', 'last_ts')
if not f[3] then return 'gone' end
local bad = check_auth(f[1], f[2], f[3], ARGV[3], ARGV[4], num(ARGV[5]))
if bad then return bad end
local last = f[3]
if ARGV[3] == 'sig' then last = ARGV[4] end
remove_peer(id)
tombstone(id, last, ARGV[6])
return 'ok'
