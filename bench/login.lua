-- POST /login with valid credentials: every request starts a new session; counts non-2xx answers.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
dofile(here .. "status.lua")

wrk.method = "POST"
wrk.path = "/login"
wrk.body = '{"username": "alice", "password": "password123"}'
wrk.headers["Content-Type"] = "application/json"
