-- Read-only. ARGV: prefix, requester, want, now, scan_start, max_scan, random_scan,
-- max_per_prefix, then the random points (64 hex characters each).
-- One candidate per random point: the first live, unsuspected peer at or after it in id
-- order (wrapping), at most random_scan looked at. Then the least loaded: the lowest
-- bucket from a random start, wrapped, then the later buckets. Both skip peers of a
-- network that already has max_per_prefix peers in the answer; when the answer is short,
-- those passed over fill it (first the random points', then the least loaded's). Random
-- and least loaded alternate in the answer, random first (the embedded store's `pick`
-- does the same).
local want = num(ARGV[3])
local now = num(ARGV[4])
local cap = num(ARGV[8])
local chosen = {[ARGV[2]] = true}
local nets = {}

local function full(net) return net ~= '' and (nets[net] or 0) >= cap end

-- The peer's info and network when it may be offered: not chosen yet, live, not suspected.
local function usable(id, check_suspected)
  if chosen[id] then return nil end
  if check_suspected and not redis.call('ZSCORE', p .. 'cand', id) then return nil end
  local fields = redis.call('HMGET', rec_key(id), 'info', 'deadline', 'net')
  if fields[1] and num(fields[2]) > now then return fields[1], (fields[3] or '') end
  return nil
end

local function take(id, info, net)
  chosen[id] = true
  if net ~= '' then nets[net] = (nets[net] or 0) + 1 end
  return info
end

local random = {}
local deferred = {}
local random_scan = num(ARGV[7])
for i = 9, #ARGV do
  if #random >= want then break end
  local point = ARGV[i]
  local ids = redis.call('ZRANGEBYLEX', p .. 'ids', '[' .. point, '+', 'LIMIT', 0, random_scan)
  if #ids < random_scan then
    local wrapped = redis.call('ZRANGEBYLEX', p .. 'ids', '-', '(' .. point, 'LIMIT', 0,
      random_scan - #ids)
    for _, id in ipairs(wrapped) do table.insert(ids, id) end
  end
  local fallback = nil
  local found = false
  for _, id in ipairs(ids) do
    local info, net = usable(id, true)
    if info then
      if not full(net) then
        table.insert(random, take(id, info, net))
        found = true
        break
      end
      fallback = fallback or id
    end
  end
  if not found and fallback then table.insert(deferred, fallback) end
end

local least = {}
local passed = {}
local want_least = want - #random
local first = redis.call('ZRANGE', p .. 'cand', 0, 0, 'WITHSCORES')
if #first > 0 and want_least > 0 then
  local bucket = 4294967296
  local function f(x) return string.format('%.0f', x) end
  local base = math.floor(num(first[2]) / bucket) * bucket
  local start = base + num(ARGV[5])
  local ranges = {
    {f(start), '(' .. f(base + bucket)},
    {f(base), '(' .. f(start)},
    {f(base + bucket), '+inf'},
  }
  local budget = num(ARGV[6])
  -- Fetch in small batches: the scan rarely needs more than `want` members, and pulling
  -- a whole budget's worth per range costs Redis far more than the few it uses.
  for _, r in ipairs(ranges) do
    local offset = 0
    while #least < want_least and budget > 0 do
      local batch = math.min(budget, want_least - #least + 16)
      local ids = redis.call('ZRANGEBYSCORE', p .. 'cand', r[1], r[2], 'LIMIT', offset, batch)
      offset = offset + #ids
      for _, id in ipairs(ids) do
        if #least >= want_least or budget <= 0 then break end
        budget = budget - 1
        local info, net = usable(id, false)
        if info then
          if not full(net) then
            table.insert(least, take(id, info, net))
          elseif #passed < want_least then
            table.insert(passed, id)
          end
        end
      end
      if #ids < batch then break end
    end
  end
end

-- Short of want: the peers passed over for their network.
for _, id in ipairs(deferred) do
  if #random + #least >= want then break end
  local info, net = usable(id, false)
  if info then table.insert(random, take(id, info, net)) end
end
for _, id in ipairs(passed) do
  if #random + #least >= want then break end
  local info, net = usable(id, false)
  if info then table.insert(least, take(id, info, net)) end
end

local out = {}
local i = 1
while i <= #random or i <= #least do
  if random[i] then table.insert(out, random[i]) end
  if least[i] then table.insert(out, least[i]) end
  i = i + 1
end
return out
