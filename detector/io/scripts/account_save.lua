-- Per key, write the value only if the stored watermark is the one that was loaded, or
-- already the new one (this very write, retried after its reply was lost). One call for the
-- batch's accounts: a script call per account cost ~25 us each, most of it in redis-py.
local ttl, out = ARGV[1], {}
for i, key in ipairs(KEYS) do
  local j = 3 * i - 1
  local cur = redis.call('GET', key)
  local watermark = cur and string.match(cur, '^[^;]*;') or '-1,-1;'
  if watermark == ARGV[j] or watermark == ARGV[j + 1] then
    redis.call('SET', key, ARGV[j + 2], 'EX', ttl)
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
