#!/bin/sh
# Regenerates the demo clips in this folder (the outputs are committed; this script documents them).
# Needs ffmpeg with libvpx-vp9, libopus and drawtext (Debian: apt-get install ffmpeg) and the
# DejaVu fonts (fonts-dejavu-core). Run from anywhere: sh tracker-frontend/media/generate.sh
set -eu
cd "$(dirname "$0")"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
BOLD=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
FPS=24
VP9="-c:v libvpx-vp9 -deadline good -cpu-used 2 -row-mt 1 -b:v 0 -g 48 -pix_fmt yuv420p"
OPUS="-c:a libopus -b:a 12k -ac 1"
META="-map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact"

# content: SMPTE HD bars, title card, running timecode and an on-picture progress bar
content() { # $1 = width, $2 = height, $3 = rendition label, $4 = crf, $5 = output
  W=$1; H=$2; S=$(echo "$H / 360" | bc -l)
  ffmpeg -v error -y \
    -f lavfi -i "smptehdbars=size=${W}x${H}:rate=${FPS}:duration=24" \
    -f lavfi -i "aevalsrc=0.04*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*0.5*t)):s=48000:d=24" \
    -vf "drawbox=x=0:y=ih*0.30:w=iw:h=ih*0.40:color=0x0b0f19@0.82:t=fill,\
drawtext=fontfile=$BOLD:text='Big Stream Demo':fontcolor=white:fontsize=42*$S:x=(w-tw)/2:y=h*0.34,\
drawtext=fontfile=$FONT:text='live-viewer-profiles · test card':fontcolor=0x9fb3c8:fontsize=17*$S:x=(w-tw)/2:y=h*0.47,\
drawtext=fontfile=$BOLD:text='%{eif\:floor(t/60)\:d\:2}\:%{eif\:mod(floor(t),60)\:d\:2} / 00\:24':fontcolor=0x5eead4:fontsize=22*$S:x=(w-tw)/2:y=h*0.57,\
drawbox=x=0:y=ih-ih/45:w=iw*t/24:h=ih/45:color=0x5eead4@0.95:t=fill,\
drawtext=fontfile=$BOLD:text='$3':fontcolor=white:fontsize=15*$S:box=1:boxcolor=0x000000@0.6:boxborderw=6*$S:x=w-tw-14*$S:y=14*$S" \
    -t 24 $VP9 -crf "$4" $OPUS $META "$5"
}

# ad: a coloured gradient card with the (fictional) advertiser and a tag line; the player draws
# the ad badge, skip button and progress on top
ad() { # $1 = n, $2 = seconds, $3 = colour A, $4 = colour B, $5 = brand, $6 = tag line
  ffmpeg -v error -y \
    -f lavfi -i "gradients=size=640x360:rate=${FPS}:duration=$2:c0=$3:c1=$4:nb_colors=2:x0=0:y0=0:x1=640:y1=360:speed=0.003:type=linear" \
    -f lavfi -i "aevalsrc=0.03*sin(2*PI*392*t)*(0.5+0.5*sin(2*PI*2*t)):s=48000:d=$2" \
    -vf "drawtext=fontfile=$BOLD:text='$5':fontcolor=white:fontsize=44:shadowcolor=0x000000@0.45:shadowx=2:shadowy=2:x=(w-tw)/2:y=h*0.38,\
drawtext=fontfile=$FONT:text='$6':fontcolor=white@0.92:fontsize=19:x=(w-tw)/2:y=h*0.55,\
drawtext=fontfile=$FONT:text='a fictional advertiser · demo ad $1':fontcolor=white@0.6:fontsize=12:x=(w-tw)/2:y=h-th-24" \
    -t "$2" $VP9 -crf 44 $OPUS $META "ad$1.webm"
}

content 640 360 360p 46 content-360p.webm
content 320 180 180p 46 content-180p.webm
ad 1 8 0xf97316 0xdb2777 "Acme Rocket Skates" "Faster than your buffer. Almost."
ad 2 6 0x0d9488 0x1d4ed8 "Nimbus Coffee" "Brewed at the speed of Kafka."
ad 3 7 0x7c3aed 0x1e3a8a "Polar Bytes Cloud" "Cold storage, warm feelings."
ls -l ./*.webm
