"""What wraps every pool app besides singlemalt: the authorization policy, read-only mode, health routes."""
