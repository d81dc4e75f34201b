-- Read-only. ARGV: prefix, after ('' for the start), limit, now, max_scan
-- Returns {next_cursor or '', info...}.
local min = '-'
if ARGV[2] ~= '' then min = '(' .. ARGV[2] end
local limit = num(ARGV[3])
local now = num(ARGV[4])
local budget = num(ARGV[5])
local ids = redis.call('ZRANGEBYLEX', p .. 'ids', min, '+', 'LIMIT', 0, budget)
local out = {''}
local cursor = ''
for _, id in ipairs(ids) do
  local fields = redis.call('HMGET', rec_key(id), 'info', 'deadline')
  if fields[1] and num(fields[2]) > now then
    if #out - 1 == limit then
      out[1] = cursor
      return out
    end
    table.insert(out, fields[1])
  end
  cursor = id
end
if #ids == budget then out[1] = cursor end
return out
