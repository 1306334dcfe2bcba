--[[
server-info: the server section of INFO, for /health (the REST client has no
INFO command).

Returns    the INFO server text
]]
return redis.call('INFO', 'server')
