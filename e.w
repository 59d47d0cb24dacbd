{"result":{"header":{"cluster_id":N,"member_id":N,"revision":"1","raft_term":N},"created":true}}
{"result":{"header":{"cluster_id":N,"member_id":N,"revision":"2","raft_term":N},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}]}}
---
{"result":{"header":{"cluster_id":N,"member_id":N,"revision":"2","raft_term":N},"created":true}}
{"result":{"header":{"cluster_id":N,"member_id":N,"revision":"2","raft_term":N},"watch_id":"1","created":true}}
{"result":{"header":{"cluster_id":N,"member_id":N,"revision":"2","raft_term":N},"events":[{"kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}]}}
---
{"error":"invalid character 'g' looking for beginning of value","message":"invalid character 'g' looking for beginning of value","code":2}---
{"result":{"header":{"cluster_id":N,"member_id":N,"revision":"2","raft_term":N},"created":true}}
---
{"result":{"header":{"cluster_id":N,"member_id":N,"revision":"2","raft_term":N},"created":true}}
{"result":{"header":{"cluster_id":N,"member_id":N,"raft_term":N},"canceled":true,"compact_revision":"2"}}
