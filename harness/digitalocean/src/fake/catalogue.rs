//! The fake's catalogue: the regions, sizes (with the list prices `plan` estimates
//! with) and images it knows, and their handlers.

use serde_json::{Value, json};

use super::answer::{Answer, Page, not_found, paged};

/// Regions, sizes and images the fake knows (a small, realistic subset).
pub const REGIONS: &[&str] = &[
    "nyc1", "nyc3", "sfo3", "ams3", "fra1", "lon1", "sgp1", "tor1", "blr1", "syd1",
];

pub const SIZES: &[(&str, u32, u32, u32, f64, f64)] = &[
    // slug, memory MB, vcpus, disk GB, price_monthly, price_hourly
    ("s-1vcpu-1gb", 1024, 1, 25, 6.0, 0.00893),
    ("s-1vcpu-2gb", 2048, 1, 50, 12.0, 0.01786),
    ("s-2vcpu-2gb", 2048, 2, 60, 18.0, 0.02679),
    ("s-2vcpu-4gb", 4096, 2, 80, 24.0, 0.03571),
];

pub const IMAGES: &[&str] = &["ubuntu-24-04-x64", "ubuntu-22-04-x64", "debian-12-x64", "docker-22-04"];

pub(super) fn regions(at: &Page<'_>) -> Answer {
    let items: Vec<Value> = REGIONS
        .iter()
        .map(|r| json!({"slug": r, "name": r, "features": ["metadata"], "available": true, "sizes": SIZES.iter().map(|s| s.0).collect::<Vec<_>>()}))
        .collect();
    paged(at.path, at.query, "regions", items)
}

pub(super) fn sizes(at: &Page<'_>) -> Answer {
    let items: Vec<Value> = SIZES.iter().map(size_json).collect();
    paged(at.path, at.query, "sizes", items)
}

pub(super) fn image(slug: &str) -> Answer {
    match IMAGES.iter().find(|i| **i == slug) {
        Some(i) => Answer::json(200, json!({"image": image_json(i)})),
        None => not_found(),
    }
}

pub(super) fn image_json(slug: &str) -> Value {
    json!({"id": 100_000 + slug.len(), "name": slug, "type": "base", "distribution": "Ubuntu", "slug": slug,
           "public": true, "regions": REGIONS, "created_at": "2026-01-01T00:00:00Z", "min_disk_size": 10,
           "size_gigabytes": 2.4, "description": slug, "tags": [], "status": "available", "error_message": ""})
}

pub(super) fn size_json(&(slug, memory, vcpus, disk, monthly, hourly): &(&str, u32, u32, u32, f64, f64)) -> Value {
    json!({"slug": slug, "memory": memory, "vcpus": vcpus, "disk": disk, "transfer": 1.0,
           "price_monthly": monthly, "price_hourly": hourly, "regions": REGIONS, "available": true,
           "description": "Basic"})
}
