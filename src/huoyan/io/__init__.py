"""Line feedback: OPC UA (Machine Vision), Modbus TCP, MQTT and webhooks, fed by station records."""
