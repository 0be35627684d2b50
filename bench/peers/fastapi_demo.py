# The FastAPI demo this project replaces (the seed documents' main.py, re-flowed), run by bench case 6 as a peer; its logic is unchanged.
from fastapi import FastAPI, Request, Depends, HTTPException
from collections import defaultdict
from datetime import datetime, timedelta
import asyncio
import json
import os

app = FastAPI()
clients_last_heartbeat = defaultdict(datetime)
last_request_time = defaultdict(datetime)
online_clients = set()
HEARTBEAT_TIMEOUT = timedelta(minutes=10)
USER_DATA_FILE = "users_data.json"


def load_user_data():
    if os.path.exists(USER_DATA_FILE):
        with open(USER_DATA_FILE, "r") as f:
            return json.load(f)
    return {}


def save_user_data(data):
    with open(USER_DATA_FILE, "w") as f:
        json.dump(data, f)


all_users = load_user_data()


@app.on_event("startup")
async def startup_event():
    asyncio.create_task(remove_offline_clients())


async def remove_offline_clients():
    while True:
        await asyncio.sleep(HEARTBEAT_TIMEOUT.total_seconds())
        now = datetime.utcnow()
        offline_clients = {ip for ip, last_heartbeat in clients_last_heartbeat.items()
                           if now - last_heartbeat > HEARTBEAT_TIMEOUT}
        for client in offline_clients:
            online_clients.discard(client)
            del clients_last_heartbeat[client]
        print(f"清除离线客户端, 当前在线客户端数量: {len(online_clients)}")


def request_limit(request: Request):
    client_ip = request.client.host
    now = datetime.utcnow()
    if client_ip in last_request_time and (now - last_request_time[client_ip]).total_seconds() < 1:
        raise HTTPException(status_code=429, detail="Too Many Requests")
    last_request_time[client_ip] = now


@app.post("/heartbeat")
async def receive_heartbeat(request: Request, limit: None = Depends(request_limit)):
    client_ip = request.client.host
    now = datetime.utcnow()
    clients_last_heartbeat[client_ip] = now
    online_clients.add(client_ip)
    all_users[client_ip] = now.isoformat()
    save_user_data(all_users)
    return {"message": "Heartbeat received", "ip": client_ip}


@app.get("/online_clients")
async def get_online_clients(request: Request, limit: None = Depends(request_limit)):
    return {"online_clients_count": len(online_clients)}


@app.post("/online_clients")
async def get_online_clients2(request: Request, limit: None = Depends(request_limit)):
    return {"online_clients_count": len(online_clients)}


@app.get("/total_users")
async def get_total_users(days: int = 7, request: Request = None, limit: None = Depends(request_limit)):
    now = datetime.utcnow()
    cutoff_date = now - timedelta(days=days)
    recent_users_count = sum(1 for last_seen in all_users.values()
                             if datetime.fromisoformat(last_seen) >= cutoff_date)
    return {"recent_users_count": recent_users_count, "days": days}


if __name__ == '__main__':
    import uvicorn
    uvicorn.run(app, host="0.0.0.0", port=8001)
