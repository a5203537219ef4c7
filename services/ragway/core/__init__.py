"""What the three services share: errors, logging, the gRPC server scaffold, tracing."""
