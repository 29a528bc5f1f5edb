-- POST /login with valid credentials: every request starts a new session.
wrk.method = "POST"
wrk.path = "/login"
wrk.body = '{"username": "alice", "password": "password123"}'
wrk.headers["Content-Type"] = "application/json"
