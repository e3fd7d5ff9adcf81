//! `docbundle configurations list` and `configurations versions`: the API's configurations
//! and one configuration's versions, one line each (or as JSON lines).

use uuid::Uuid;

use crate::api::Client;
use crate::ListArgs;

pub async fn list(client: &Client, list: &ListArgs) -> anyhow::Result<()> {
    let items = client.list("/configurations", &[], list.limit).await?;
    for item in &items {
        if list.json {
            println!("{item}");
        } else {
            println!(
                "{}\tv{}\t{}\t{}\t{}",
                item["id"].as_str().unwrap_or(""),
                item["version"],
                item["status"].as_str().unwrap_or(""),
                item["updatedAt"].as_str().unwrap_or(""),
                item["name"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

pub async fn versions(client: &Client, id: Uuid, list: &ListArgs) -> anyhow::Result<()> {
    let items = client
        .list(&format!("/configurations/{id}/versions"), &[], list.limit)
        .await?;
    for item in &items {
        if list.json {
            println!("{item}");
        } else {
            println!(
                "v{}\t{}\t{}\t{} documents\t{}",
                item["version"],
                item["createdAt"].as_str().unwrap_or(""),
                item["createdBy"].as_str().unwrap_or(""),
                item["documents"].as_array().map_or(0, Vec::len),
                item["name"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
