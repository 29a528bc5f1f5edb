-- POST /communicate with the session cookie given in SESSION_TOKEN.
wrk.method = "POST"
wrk.path = "/communicate"
wrk.body = '{"action": "echo", "message": "hello"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = "sessionToken=" .. os.getenv("SESSION_TOKEN")
