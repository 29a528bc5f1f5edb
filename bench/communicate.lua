-- POST /communicate with the session cookie given in SESSION_TOKEN; counts non-2xx answers.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
dofile(here .. "status.lua")

wrk.method = "POST"
wrk.path = "/communicate"
wrk.body = '{"action": "echo", "message": "hello"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = "sessionToken=" .. os.getenv("SESSION_TOKEN")
