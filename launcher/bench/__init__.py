"""`modelserve bench`: closed-loop load against any deployment's OpenAI route, measured from the
client's side (tokens from the server's usage), one workload at a time, several deployments
interleaved. Imports no engine: it speaks HTTP only."""
