"""Fake FastChat model worker: 'loads', registers its names with the controller, serves nothing."""

import os
import sys
import threading
import time

from fastchat.serve._http import MODE, log, parser, post, serve

args = parser().parse_args()
log(f"Loading the model {args.model_names} on worker {args.worker_address}, conv template {args.conv_template}")
if MODE == "worker-dies":
    log("RuntimeError: CUDA out of memory (fake)")
    sys.exit(3)
post(args.controller_address + "/register_worker",
     {"worker_name": args.worker_address, "check_heart_beat": True,
      "worker_status": {"model_names": args.model_names, "speed": 1, "queue_length": 0}})
log("Register done")
if MODE == "worker-dies-later":
    threading.Thread(target=lambda: (time.sleep(2), log("worker crashed"), os._exit(2)), daemon=True).start()
serve(args.host, args.port, {})
