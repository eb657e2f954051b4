//! batch/v1: Job and CronJob.

use serde_json::{json, Value};

use super::{age, arr, col, containers_images, format_label_selector, int, name, or, s, since, wide, Column, Printer, AGE, CONTAINERS_DOC, IMAGES_DOC, NAME};
use crate::meta;

pub(super) fn printer(kind: &str) -> Option<Printer> {
    let (columns, cells): (Vec<Column>, super::Cells) = match kind {
        "Job" => (
            vec![
                NAME,
                col("Status", "string", "Status of the job."),
                col("Completions", "string", "The successful number of completions of the job."),
                col("Duration", "string", "Time required to complete the job."),
                AGE,
                wide("Containers", "string", CONTAINERS_DOC),
                wide("Images", "string", IMAGES_DOC),
                wide("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
            ],
            job_cells,
        ),
        "CronJob" => (
            vec![
                NAME,
                col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
                col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
                col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
                col("Active", "integer", "A list of pointers to currently running jobs."),
                col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled."),
                AGE,
                wide("Containers", "string", CONTAINERS_DOC),
                wide("Images", "string", IMAGES_DOC),
                wide("Selector", "string", "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
            ],
            |o, now| {
                let spec = &o["spec"];
                let job = &spec["jobTemplate"]["spec"];
                let (c, i) = containers_images(&job["template"]["spec"]);
                let suspend = match spec["suspend"].as_bool() {
                    Some(true) => "True",
                    Some(false) => "False",
                    None => "<unset>",
                };
                let last = if o["status"]["lastScheduleTime"].is_string() { since(&o["status"]["lastScheduleTime"], now) } else { "<none>".into() };
                vec![
                    name(o),
                    json!(s(&spec["schedule"])),
                    json!(or(s(&spec["timeZone"]), "<none>")),
                    json!(suspend),
                    json!(arr(&o["status"]["active"]).len()),
                    json!(last),
                    age(o, now),
                    c,
                    i,
                    json!(format_label_selector(&job["selector"])),
                ]
            },
        ),
        _ => return None,
    };
    Some(Printer { columns, cells })
}

fn job_cells(o: &Value, now: i64) -> Vec<Value> {
    let spec = &o["spec"];
    let st = &o["status"];
    let succeeded = int(&st["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let time = |k: &str| st[k].as_str().and_then(meta::parse_rfc3339);
    let duration = match (time("startTime"), time("completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => meta::human_duration(now - start),
        (Some(start), Some(end)) => meta::human_duration(end - start),
    };
    let has = |ty: &str| arr(&st["conditions"]).iter().any(|c| s(&c["type"]) == ty && s(&c["status"]) == "True");
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if o["metadata"]["deletionTimestamp"].is_string() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (c, i) = containers_images(&spec["template"]["spec"]);
    vec![name(o), json!(status), json!(completions), json!(duration), age(o, now), c, i, json!(format_label_selector(&spec["selector"]))]
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ago, cells, headers};
    use serde_json::json;

    #[test]
    fn job() {
        let h: Vec<String> = headers("batch", "Job").into_iter().map(|h| h.0).collect();
        assert_eq!(h, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
        let done = json!({"metadata": {"name": "pi", "creationTimestamp": ago(400)}, "spec": {"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
            "template": {"spec": {"containers": [{"name": "pi", "image": "perl"}]}}},
            "status": {"succeeded": 1, "startTime": ago(390), "completionTime": ago(350), "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}});
        assert_eq!(cells("batch", "Job", &done), [json!("pi"), json!("Complete"), json!("1/1"), json!("40s"), json!("6m40s"), json!("pi"), json!("perl"), json!("batch.kubernetes.io/controller-uid=u")]);
        let running = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 3}, "status": {"startTime": ago(130)}});
        assert_eq!(cells("batch", "Job", &running)[1..4], [json!("Running"), json!("0/1 of 3"), json!("2m10s")]);
        let fresh = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 1}});
        assert_eq!(cells("batch", "Job", &fresh)[1..4], [json!("Running"), json!("0/1"), json!("")]);
        let failed = json!({"metadata": {"name": "w"}, "spec": {}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(cells("batch", "Job", &failed)[1], "Failed");
        let suspended = json!({"metadata": {"name": "w"}, "spec": {}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}});
        assert_eq!(cells("batch", "Job", &suspended)[1], "Suspended");
    }

    #[test]
    fn cronjob() {
        let h: Vec<String> = headers("batch", "CronJob").into_iter().map(|h| h.0).collect();
        assert_eq!(h, ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST SCHEDULE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]);
        let cj = json!({"metadata": {"name": "hello", "creationTimestamp": ago(3600)}, "spec": {"schedule": "*/1 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "hello", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(20)}});
        assert_eq!(cells("batch", "CronJob", &cj), [json!("hello"), json!("*/1 * * * *"), json!("<none>"), json!("False"), json!(1), json!("20s"), json!("60m"), json!("hello"), json!("busybox"), json!("<none>")]);
        let bare = json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
        assert_eq!(cells("batch", "CronJob", &bare)[2..6], [json!("Etc/UTC"), json!("<unset>"), json!(0), json!("<none>")]);
    }
}
