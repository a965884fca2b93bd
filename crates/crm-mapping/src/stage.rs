//! The pipeline stage of a CRM row: a closed set, parsed once at the edge.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a lead stands in the sales pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineStage {
    New,
    Contacted,
    Qualified,
    MeetingBooked,
    Won,
    Lost,
}

impl PipelineStage {
    /// Every stage, in pipeline order.
    pub const ALL: [PipelineStage; 6] = [
        PipelineStage::New,
        PipelineStage::Contacted,
        PipelineStage::Qualified,
        PipelineStage::MeetingBooked,
        PipelineStage::Won,
        PipelineStage::Lost,
    ];

    /// The wire and database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineStage::New => "new",
            PipelineStage::Contacted => "contacted",
            PipelineStage::Qualified => "qualified",
            PipelineStage::MeetingBooked => "meeting_booked",
            PipelineStage::Won => "won",
            PipelineStage::Lost => "lost",
        }
    }
}

impl fmt::Display for PipelineStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a string that is not a stage; its message lists the allowed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStage;

impl fmt::Display for UnknownStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("must be one of new, contacted, qualified, meeting_booked, won, lost")
    }
}

impl std::error::Error for UnknownStage {}

impl FromStr for PipelineStage {
    type Err = UnknownStage;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PipelineStage::ALL.into_iter().find(|stage| stage.as_str() == s).ok_or(UnknownStage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stage_round_trips_through_its_spelling_and_serde() {
        for stage in PipelineStage::ALL {
            assert_eq!(stage.as_str().parse::<PipelineStage>(), Ok(stage));
            let json = serde_json::to_value(stage).unwrap();
            assert_eq!(json, stage.as_str());
        }
    }

    #[test]
    fn unknown_and_miscased_stages_are_rejected() {
        for bad in ["", "New", "meeting-booked", "closed", " won"] {
            assert_eq!(bad.parse::<PipelineStage>(), Err(UnknownStage), "{bad:?}");
        }
    }
}
