import logging
from serverapi import ThreadedAPIServer

# Define user credentials
credentials = {
    "alice": "password123",
    "bob": "securepassword",
}

# Define the request callback function
def my_request_callback(username, session_token, data):
    """
    Handle authenticated requests.

    Args:
        username (str): The username of the authenticated user.
        session_token (str): The session token.
        data (dict): The JSON data sent by the client.

    Returns:
        tuple:
            force_close (bool): Whether to forcefully close the connection.
            force_logout (bool): Whether to force logout the user.
            response_json (dict): The JSON data to send back as the response.
    """
    # Implement your custom logic here
    if data.get("action") == "echo":
        response = {"echo": data.get("message", "")}
    else:
        response = {"error": "Unknown action."}
    
    # Do not force close or logout
    return (False, False, response)

# Set up logging
logger = logging.getLogger("MyAPIServer")
logger.setLevel(logging.INFO)
handler = logging.StreamHandler()
formatter = logging.Formatter('%(asctime)s - %(levelname)s - %(message)s')
handler.setFormatter(formatter)
logger.addHandler(handler)

# Initialize the server
server = ThreadedAPIServer(
    host="127.0.0.1",
    port=8000,
    credentials=credentials,
    request_callback=my_request_callback,
    login_cookie_level="Strict",  # Options: "None", "Lax", "Strict"
    logger=logger,
    timeout=5.0,
    max_recv_calls_per_request=1024
)

# Optional: Enable TLS
# server.setConnectionSecurityParams(certfile="path/to/cert.pem", keyfile="path/to/key.pem")

# Start the API server
try:
    server.startAPIServer()
except KeyboardInterrupt:
    server.stopAPIServer()
    logger.info("Server stopped.")
