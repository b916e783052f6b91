"""`dreamgym serve`: envs over AgentGym's HTTP protocol (sessions + FastAPI app)."""
