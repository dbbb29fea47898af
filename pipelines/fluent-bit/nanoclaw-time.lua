-- NanoClaw v2 prints only a time of day: hand clawwatch the moment Fluent Bit
-- read the line, so it can date it (RFC 3339, UTC, milliseconds).
function add_read_time(tag, timestamp, record)
    local sec = math.floor(timestamp)
    local ms = math.floor((timestamp - sec) * 1000)
    record["time"] = os.date("!%Y-%m-%dT%H:%M:%S", sec) .. string.format(".%03dZ", ms)
    return 1, timestamp, record
end
