"""`strl serve`: the trained model behind Ray Serve. `run` goes from config to a running
application; `app` holds the Serve deployments (vLLM replicas and the HTTP front end);
`gateway` is the HTTP API as a plain class (routes, checks, prompts, metrics)."""
