//! Realistic `alerts_v2` alert bodies (~4 KB each): every service source, many evidence types,
//! plus properties and evidence types this connector has never heard of.

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::rng::Rng;

/// Service sources documented for alerts_v2, and one from the future (as Graph sends it with
/// `Prefer: include-unknown-enum-members`).
pub const SERVICE_SOURCES: &[(&str, &str, &str)] = &[
    ("microsoftDefenderForEndpoint", "antivirus", "Microsoft Defender for Endpoint"),
    ("microsoftDefenderForIdentity", "microsoftDefenderForIdentity", "Microsoft Defender for Identity"),
    ("microsoftDefenderForCloudApps", "microsoftDefenderForCloudApps", "Microsoft Defender for Cloud Apps"),
    ("microsoftDefenderForOffice365", "microsoftDefenderForOffice365", "Microsoft Defender for Office 365"),
    ("microsoft365Defender", "microsoft365Defender", "Microsoft Defender XDR"),
    ("azureAdIdentityProtection", "azureAdIdentityProtection", "Microsoft Entra ID Protection"),
    ("microsoftAppGovernance", "appGovernancePolicy", "App governance"),
    ("dataLossPrevention", "microsoftDataLossPrevention", "Microsoft Purview Data Loss Prevention"),
    ("microsoftDefenderForCloud", "cloudAppSecurity", "Microsoft Defender for Cloud"),
    ("microsoftSentinel", "scheduledAlerts", "Microsoft Sentinel"),
    ("microsoftInsiderRiskManagement", "microsoftInsiderRiskManagement", "Insider Risk Management"),
    ("microsoftThreatIntelligence", "microsoftThreatIntelligence", "Microsoft Threat Intelligence"),
];

const TITLES: &[(&str, &str, &str)] = &[
    ("Suspicious execution of hidden file", "DefenseEvasion", "T1564.001"),
    ("Suspicious PowerShell command line", "Execution", "T1059.001"),
    ("Possible credential dumping via LSASS access", "CredentialAccess", "T1003.001"),
    ("Anomalous sign-in from an unfamiliar location", "InitialAccess", "T1078"),
    ("Email messages containing malicious URL removed after delivery", "InitialAccess", "T1566.002"),
    ("Mass download by a single user", "Exfiltration", "T1530"),
    ("Suspicious inbox forwarding rule", "Collection", "T1114.003"),
    ("Ransomware behavior detected in the file system", "Impact", "T1486"),
    ("Lateral movement using remote services", "LateralMovement", "T1021.002"),
    ("Sensitive data shared externally", "Exfiltration", "T1567"),
];

const SEVERITIES: &[&str] = &["informational", "low", "medium", "high"];
const USERS: &[&str] =
    &["adele.vance", "alex.wilber", "diego.siciliani", "grady.archie", "isaiah.langer", "megan.bowen"];
const HOSTS: &[&str] = &["wks-0142", "wks-0977", "srv-sql-02", "srv-dc-01", "lt-finance-07", "vm-build-33"];

/// The `id` of alert number `n` of a tenant (Defender's `da<ticks>_<hash>` shape).
pub fn alert_id(rng_seed: u64, n: u64) -> String {
    let mut rng = Rng::new(rng_seed ^ n.wrapping_mul(0x2545_F491_4F6C_DD1D));
    format!("da63{:016}_{}", rng.below(10_000_000_000_000_000), -(rng.below(2_000_000_000) as i64))
}

/// Graph's timestamp style: 7 fractional digits (trailing zeros kept).
pub fn graph_time(instant: DateTime<Utc>) -> String {
    format!("{}.{:07}Z", instant.format("%Y-%m-%dT%H:%M:%S"), instant.timestamp_subsec_nanos() / 100)
}

/// A new alert as Graph would list it right after creation.
pub fn new_alert(seed: u64, n: u64, created: DateTime<Utc>, tenant_id: &str) -> Value {
    let mut rng = Rng::new(seed.wrapping_add(n.wrapping_mul(0x9E37_79B9)));
    let id = alert_id(seed, n);
    let (service, detection, product) = *rng.pick(SERVICE_SOURCES);
    let (title, category, technique) = *rng.pick(TITLES);
    let severity = *rng.pick(SEVERITIES);
    let user = *rng.pick(USERS);
    let host = *rng.pick(HOSTS);
    let first_activity = created - TimeDelta::minutes(rng.below(240) as i64 + 1);
    let incident = 10_000 + n / 3;
    let mut alert = json!({
        "@odata.type": "#microsoft.graph.security.alert",
        "id": id,
        "providerAlertId": id,
        "incidentId": incident.to_string(),
        "status": "new",
        "severity": severity,
        "classification": null,
        "determination": null,
        "serviceSource": service,
        "detectionSource": detection,
        "productName": product,
        "detectorId": rng.guid(),
        "tenantId": tenant_id,
        "title": title,
        "description": format!("{title}. The activity was observed on {host} for user {user}. Attackers often use this technique to gain a foothold, escalate privileges or evade defenses; review the timeline of the device and the account around the time of the alert and look for related artifacts on other systems."),
        "recommendedActions": "Collect artifacts and determine scope\n\u{2022}\tReview the machine timeline for suspicious activities that may have occurred before and after the time of the alert.\n\u{2022}\tLook for the presence of relevant artifacts on other systems.\n\u{2022}\tSubmit relevant files for deep analysis.\n\nInitiate containment & mitigation\n\u{2022}\tContact the user to verify intent and initiate local remediation actions as needed.\n\u{2022}\tIf credential theft is suspected, reset all relevant users passwords.",
        "category": category,
        "assignedTo": null,
        "alertWebUrl": format!("https://security.microsoft.com/alerts/{id}?tid={tenant_id}"),
        "incidentWebUrl": format!("https://security.microsoft.com/incidents/{incident}?tid={tenant_id}"),
        "actorDisplayName": null,
        "threatDisplayName": if rng.chance(30) { json!("Trojan:Win32/Wacatac.B!ml") } else { Value::Null },
        "threatFamilyName": null,
        "mitreTechniques": [technique],
        "createdDateTime": graph_time(created),
        "lastUpdateDateTime": graph_time(created),
        "resolvedDateTime": null,
        "firstActivityDateTime": graph_time(first_activity),
        "lastActivityDateTime": graph_time(created - TimeDelta::seconds(rng.below(600) as i64)),
        "systemTags": if rng.chance(20) { json!(["Defender Experts"]) } else { json!([]) },
        "alertPolicyId": null,
        "comments": [],
        "customDetails": {},
        "additionalData": {"simulatedBy": "xdr-simulator"},
        "evidence": evidence(&mut rng, created, user, host),
    });
    if rng.chance(15) {
        // A property this connector has never seen: it must pass through untouched.
        alert["investigationPriorityScore"] = json!({"score": rng.below(100), "model": "v3-preview"});
    }
    alert
}

fn evidence(rng: &mut Rng, created: DateTime<Utc>, user: &str, host: &str) -> Value {
    let time = graph_time(created);
    let base = |kind: &str, verdict: &str| {
        json!({
            "@odata.type": format!("#microsoft.graph.security.{kind}"),
            "createdDateTime": time,
            "verdict": verdict,
            "remediationStatus": "none",
            "remediationStatusDetails": null,
            "roles": [],
            "detailedRoles": [],
            "tags": [],
        })
    };
    let mut items = Vec::new();
    let mut device = base("deviceEvidence", "suspicious");
    merge(
        &mut device,
        json!({
            "firstSeenDateTime": time, "mdeDeviceId": rng.guid(), "azureAdDeviceId": rng.guid(),
            "deviceDnsName": format!("{host}.contoso.com"), "hostName": host, "osPlatform": "Windows11",
            "osBuild": 22631, "healthStatus": "active", "riskScore": "medium", "onboardingStatus": "onboarded",
            "defenderAvStatus": "updated", "ipInterfaces": ["10.1.4.22", "fe80::1c2b:3a4d:5e6f:7081"],
            "loggedOnUsers": [{"accountName": user, "domainName": "CONTOSO"}], "vmMetadata": null,
        }),
    );
    items.push(device);
    let mut account = base("userEvidence", "unknown");
    merge(
        &mut account,
        json!({"userAccount": {
            "accountName": user, "domainName": "CONTOSO", "userSid": format!("S-1-5-21-{}", rng.below(1_000_000_000)),
            "azureAdUserId": rng.guid(), "userPrincipalName": format!("{user}@contoso.com"), "displayName": user,
        }}),
    );
    items.push(account);
    match rng.below(6) {
        0 => {
            let mut process = base("processEvidence", "malicious");
            merge(
                &mut process,
                json!({"processId": rng.below(30_000), "processCommandLine": "powershell.exe -nop -w hidden -enc SQBFAFgA", "processCreationDateTime": time,
                "imageFile": {"fileName": "powershell.exe", "filePath": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0", "sha256": format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())}}),
            );
            items.push(process);
        }
        1 => {
            let mut file = base("fileEvidence", "malicious");
            merge(
                &mut file,
                json!({"detectionStatus": "detected", "mdeDeviceId": rng.guid(),
                "fileDetails": {"fileName": "invoice.pdf.exe", "filePath": "C:\\Users\\Public\\Downloads", "fileSize": rng.below(5_000_000), "sha1": format!("{:016x}", rng.next_u64())}}),
            );
            items.push(file);
        }
        2 => {
            let mut mail = base("analyzedMessageEvidence", "malicious");
            merge(
                &mut mail,
                json!({"networkMessageId": rng.guid(), "subject": "Action required: invoice overdue", "senderIp": "203.0.113.9",
                "recipientEmailAddress": format!("{user}@contoso.com"), "deliveryAction": "delivered", "urls": ["https://contoso-billing.example/pay"], "threatDetectionMethods": ["urlDetonation"]}),
            );
            items.push(mail);
            let mut url = base("urlEvidence", "malicious");
            merge(&mut url, json!({"url": "https://contoso-billing.example/pay"}));
            items.push(url);
        }
        3 => {
            let mut ip = base("ipEvidence", "suspicious");
            merge(
                &mut ip,
                json!({"ipAddress": format!("198.51.100.{}", rng.below(255)), "countryLetterCode": "NL", "location": {"city": "Amsterdam", "countryName": "Netherlands", "latitude": 52.37, "longitude": 4.89}}),
            );
            items.push(ip);
            let mut app = base("cloudApplicationEvidence", "unknown");
            merge(
                &mut app,
                json!({"appId": rng.below(100_000), "displayName": "Office 365", "instanceId": 0, "saasAppId": 11161}),
            );
            items.push(app);
        }
        4 => {
            let mut key = base("registryKeyEvidence", "suspicious");
            merge(
                &mut key,
                json!({"registryKey": "SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run", "registryHive": "HKEY_LOCAL_MACHINE"}),
            );
            items.push(key);
            let mut mailbox = base("mailboxEvidence", "unknown");
            merge(
                &mut mailbox,
                json!({"displayName": user, "primaryAddress": format!("{user}@contoso.com")}),
            );
            items.push(mailbox);
        }
        _ => {
            // An evidence type newer than this code: kept as sent.
            let mut future = base("quantumEntanglementEvidence", "unknown");
            merge(&mut future, json!({"entanglementId": rng.guid(), "qubits": [1, 0, 1]}));
            items.push(future);
        }
    }
    Value::Array(items)
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        target.extend(extra);
    }
}

/// The next lifecycle step of an alert (status, assignment, classification, comments).
pub fn next_version(previous: &Value, at: DateTime<Utc>, rng: &mut Rng) -> Value {
    let mut alert = previous.clone();
    let status = alert["status"].as_str().unwrap_or("new").to_owned();
    let analyst = format!("{}@contoso.com", rng.pick(USERS));
    match status.as_str() {
        "new" => {
            alert["status"] = json!("inProgress");
            alert["assignedTo"] = json!(analyst);
        }
        "inProgress" => {
            alert["status"] = json!("resolved");
            alert["classification"] =
                json!(rng.pick(&["truePositive", "falsePositive", "informationalExpectedActivity"]));
            alert["determination"] = json!(rng.pick(&["malware", "phishing", "securityTesting", "other"]));
            alert["resolvedDateTime"] = json!(graph_time(at));
        }
        _ => {}
    }
    if let Some(comments) = alert["comments"].as_array_mut() {
        comments.push(json!({"comment": format!("Step {} by {analyst}", comments.len() + 1), "createdByDisplayName": analyst, "createdDateTime": graph_time(at)}));
    }
    alert["lastUpdateDateTime"] = json!(graph_time(at));
    alert
}
