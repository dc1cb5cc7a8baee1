//! `mcpctl schedules`: list, read, create, pause, resume and delete recurring schedules.

use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::{
    cli::{Args, check_id, fields, parse_number, read_json, text},
    client::Client,
    config::{Config, Output},
    error::{Error, Exit, Result},
    output::table,
};

const USAGE: &str = "usage: mcpctl schedules list | get ID | pause ID | resume ID | delete ID | \
                     create --name NAME (--cron EXPR | --every SECONDS) (--task JSON | --pipeline JSON)";

pub async fn run(config: &Config, mut args: Args) -> Result<Exit> {
    if args.subcommand("create") {
        return create(config, args).await;
    }
    let pos = args.positionals()?;
    let mut client = Client::authenticated(config)?;
    match pos.as_slice() {
        [verb] if verb == "list" => list(config, &mut client).await,
        [verb, id] => {
            let id = check_id(id)?;
            let path = format!("/api/v1/schedules/{id}");
            let schedule = match verb.as_str() {
                "get" => client.get(&path).await?,
                "pause" | "resume" => {
                    let body = json!({"paused": verb == "pause"});
                    client.call(Method::PATCH, &path, Some(&body)).await?["data"].take()
                }
                "delete" => {
                    client.call(Method::DELETE, &path, None).await?;
                    eprintln!("schedule {id} deleted");
                    return Ok(Exit::Ok);
                }
                _ => return Err(Error::usage(USAGE)),
            };
            show(config, schedule);
            Ok(Exit::Ok)
        }
        _ => Err(Error::usage(USAGE)),
    }
}

async fn list(config: &Config, client: &mut Client) -> Result<Exit> {
    let list = client.get("/api/v1/schedules?limit=1000").await?;
    if config.output == Output::Json {
        println!("{list}");
        return Ok(Exit::Ok);
    }
    let rows: Vec<Vec<String>> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(&s["id"]),
                text(&s["name"]),
                timing(s),
                text(&s["template_kind"]),
                if s["paused"] == true { "yes" } else { "no" }.into(),
                text(&s["next_run_times"][0]),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "WHEN", "STARTS", "PAUSED", "NEXT_RUN"],
        &rows,
    );
    Ok(Exit::Ok)
}

/// `cron EXPR (TZ)` or `every N s`.
fn timing(s: &Value) -> String {
    match s["cron"].as_str() {
        Some(c) => format!("{c} ({})", text(&s["time_zone"])),
        None => format!("every {} s", text(&s["interval_seconds"])),
    }
}

async fn create(config: &Config, mut args: Args) -> Result<Exit> {
    let name = args.value(&["--name"])?;
    let cron = args.value(&["--cron"])?;
    let every: Option<u64> = parse_number("--every", args.value(&["--every"])?)?;
    let time_zone = args.value(&["--time-zone"])?;
    let start_at = args.value(&["--start-at"])?;
    let task = args.value(&["--task"])?;
    let pipeline = args.value(&["--pipeline"])?;
    let overlap = args.value(&["--overlap"])?;
    let catch_up = args.value(&["--catch-up"])?;
    let paused = args.switch("--paused");
    if !args.positionals()?.is_empty() {
        return Err(Error::usage(USAGE));
    }
    let Some(name) = name else {
        return Err(Error::usage("schedules create needs --name"));
    };
    let mut body = Map::new();
    body.insert("name".into(), json!(name));
    let optional = [
        ("cron", cron.map(Value::from)),
        ("interval_seconds", every.map(Value::from)),
        ("time_zone", time_zone.map(Value::from)),
        ("start_at", start_at.map(Value::from)),
        ("overlap_policy", overlap.map(Value::from)),
        ("catch_up_policy", catch_up.map(Value::from)),
        ("task", task.map(|t| read_json("--task", &t)).transpose()?),
        (
            "pipeline",
            pipeline.map(|p| read_json("--pipeline", &p)).transpose()?,
        ),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            body.insert(key.into(), v);
        }
    }
    if paused {
        body.insert("paused".into(), json!(true));
    }
    let mut client = Client::authenticated(config)?;
    let created = client
        .call(
            Method::POST,
            "/api/v1/schedules",
            Some(&Value::Object(body)),
        )
        .await?["data"]
        .take();
    show(config, created);
    Ok(Exit::Ok)
}

fn show(config: &Config, s: Value) {
    if config.output == Output::Json {
        println!("{s}");
        return;
    }
    let next = s["next_run_times"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect::<Vec<_>>()
        .join(", ");
    fields(&[
        ("id", text(&s["id"])),
        ("name", text(&s["name"])),
        ("when", timing(&s)),
        ("starts", text(&s["template_kind"])),
        ("overlap_policy", text(&s["overlap_policy"])),
        ("catch_up_policy", text(&s["catch_up_policy"])),
        ("paused", text(&s["paused"])),
        (
            "next_run_times",
            if next.is_empty() { "-".into() } else { next },
        ),
    ]);
}
