{"result":{"created":true,"header":{"cluster_id":N,"member_id":N,"raft_term":N,"revision":"1"}}}
{"result":{"events":[{"kv":{"create_revision":"2","key":"Zm9v","mod_revision":"2","value":"YmFy","version":"1"}}],"header":{"cluster_id":N,"member_id":N,"raft_term":N,"revision":"2"}}}
---
{"result":{"created":true,"header":{"cluster_id":N,"member_id":N,"raft_term":N,"revision":"2"}}}
{"result":{"created":true,"header":{"cluster_id":N,"member_id":N,"raft_term":N,"revision":"2"},"watch_id":"1"}}
{"result":{"events":[{"kv":{"create_revision":"2","key":"Zm9v","mod_revision":"2","value":"YmFy","version":"1"}}],"header":{"cluster_id":N,"member_id":N,"raft_term":N,"revision":"2"}}}
---
{"error":"expected value at line 1 column 1","message":"expected value at line 1 column 1","code":2}---
{"result":{"cancel_reason":"etcdserver: invalid watch request","canceled":true,"created":true,"header":{"cluster_id":N,"member_id":N,"raft_term":N,"revision":"2"},"watch_id":"-1"}}
---
{"result":{"created":true,"header":{"cluster_id":N,"member_id":N,"raft_term":N,"revision":"2"}}}
{"result":{"cancel_reason":"etcdserver: mvcc: required revision has been compacted","canceled":true,"compact_revision":"2","header":{"cluster_id":N,"member_id":N,"raft_term":N,"revision":"2"}}}
